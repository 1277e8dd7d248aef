import { once } from 'node:events';
import { closeSync, openSync, rmSync } from 'node:fs';
import { open as openHandle } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createResourceTracker, type ResourceTracker } from '@trustflow/core';
import { createBufferPool } from '@trustflow/plugin-buffer-pool';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { expectNoLeaks, LeakError } from '../src/index.js';
import { cleanup, later, server, siteOf } from './helpers.js';

afterEach(cleanup);

const here = import.meta.url;
const file = join(tmpdir(), `leak-test-${process.pid}.txt`);
afterAll(() => rmSync(file, { force: true }));

async function leakOf(fn: () => unknown, options?: Parameters<typeof expectNoLeaks>[1]) {
  const error = await expectNoLeaks(fn, { timeoutMs: 200, ...options }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LeakError);
  return error as LeakError;
}

describe('expectNoLeaks catches each kind of leak with its site', () => {
  it('a socket', async () => {
    const { port } = await server();
    const error = await leakOf(async () => {
      const socket = connect(port, '127.0.0.1'); // MARK:socket
      later(() => socket.destroy());
      await once(socket, 'connect');
    });
    const [leak] = error.leaks.filter((l) => l.site?.startsWith(siteOf(here, 'socket')));
    expect(leak).toMatchObject({ count: 1, reason: 'open-at-exit' });
    expect(leak!.kind).toMatch(/^(net\.socket|async\.TCPWRAP)$/);
    expect(error.message).toContain(`at ${leak!.site}`);
    expect(error.message).toMatch(
      /^expectNoLeaks: the function left \d+ resources? in \d+ groups?:/,
    );
  });

  it('a server', async () => {
    const error = await leakOf(async () => {
      const s = createServer().listen(0, '127.0.0.1'); // MARK:server
      later(() => s.close());
      await once(s, 'listening');
    });
    expect(error.leaks).toHaveLength(1);
    expect(error.leaks[0]!.kind).toMatch(/^(net\.server|async\.TCPSERVERWRAP)$/);
    expect(error.leaks[0]!.site).toMatch(new RegExp(`^${siteOf(here, 'server')}\\d+$`));
  });

  it('a timer; an unref-ed interval when asked', async () => {
    const leaky = () => {
      const a = setTimeout(() => {}, 60_000); // MARK:timeout
      const b = setInterval(() => {}, 60_000).unref(); // MARK:interval
      later(() => {
        clearTimeout(a);
        clearInterval(b);
      });
    };
    const error = await leakOf(leaky);
    expect(error.leaks).toMatchObject([{ kind: 'timer', count: 1 }]);
    expect(error.leaks[0]!.site).toMatch(new RegExp(`^${siteOf(here, 'timeout')}\\d+$`));
    const strict = await leakOf(leaky, { ignoreUnrefTimers: false });
    expect(strict.leaks.map((l) => l.site?.replace(/\d+$/, '')).sort()).toEqual(
      [siteOf(here, 'timeout'), siteOf(here, 'interval')].sort(),
    );
    expect(strict.message).toMatch(/1 x timer \(still open\) hasRef=false/);
  });

  it('a file descriptor and a FileHandle', async () => {
    const error = await leakOf(async () => {
      const fd = openSync(file, 'w'); // MARK:fd
      const handle = await openHandle(file, 'r'); // MARK:filehandle
      later(async () => {
        closeSync(fd);
        await handle.close();
      });
    });
    const kinds = Object.fromEntries(error.leaks.map((l) => [l.kind, l.site]));
    expect(kinds['fs.fd']).toMatch(new RegExp(`^${siteOf(here, 'fd')}\\d+$`));
    expect(kinds['fs.filehandle']).toMatch(new RegExp(`^${siteOf(here, 'filehandle')}\\d+$`));
    expect(error.leaks).toHaveLength(2);
  });

  it('a pooled buffer never returned', async () => {
    const pool = createBufferPool();
    later(() => pool.close?.());
    const error = await leakOf(() => {
      const buffer = pool.acquire(1024); // MARK:buffer
      later(() => buffer.release());
    });
    expect(error.leaks).toMatchObject([{ kind: 'buffer_pool.buffer', count: 1 }]);
    expect(error.leaks[0]!.site).toMatch(new RegExp(`^${siteOf(here, 'buffer')}\\d+$`));
  });
});

describe('expectNoLeaks passes clean equivalents', () => {
  it('a socket destroyed without waiting for its close (the close completes asynchronously)', async () => {
    const { port } = await server();
    await expectNoLeaks(async () => {
      const socket = connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.destroy();
    });
  });

  it('a server closed without waiting, a cleared interval, a timer that fires soon', async () => {
    await expectNoLeaks(async () => {
      const s = createServer().listen(0, '127.0.0.1');
      await once(s, 'listening');
      s.close();
      clearInterval(setInterval(() => {}, 1000));
      setTimeout(() => {}, 20);
    });
  });

  it('fds and FileHandles closed, a buffer returned', async () => {
    const pool = createBufferPool();
    await expectNoLeaks(async () => {
      closeSync(openSync(file, 'w'));
      const handle = await openHandle(file, 'r');
      await handle.close();
      pool.acquire(2048).release();
      await pool.use(512, () => {});
    });
  });

  it('does not count what was open before, and returns the value of fn', async () => {
    const keep = setInterval(() => {}, 60_000);
    later(() => clearInterval(keep));
    await expect(expectNoLeaks(async () => 42)).resolves.toBe(42);
  });
});

describe('expectNoLeaks options and errors', () => {
  it('ignores kinds and sites', async () => {
    await expectNoLeaks(
      () => {
        const t = setTimeout(() => {}, 60_000);
        later(() => clearTimeout(t));
      },
      { ignoreKinds: ['timer'], timeoutMs: 50 },
    );
    await expectNoLeaks(
      () => {
        const t = setTimeout(() => {}, 60_000);
        later(() => clearTimeout(t));
      },
      { ignoreKinds: [/^tim/], timeoutMs: 50 },
    );
    await expectNoLeaks(
      () => {
        const t = setTimeout(() => {}, 60_000); // MARK:ignored-site
        later(() => clearTimeout(t));
      },
      { ignoreSites: [siteOf(here, 'ignored-site')], timeoutMs: 50 },
    );
    const error = await leakOf(
      () => {
        const t = setTimeout(() => {}, 60_000);
        later(() => clearTimeout(t));
      },
      { ignoreSites: ['/no/such/file.ts'] },
    );
    expect(error.leaks).toHaveLength(1);
  });

  it('works with a tracker of your own (kinds your plugins define)', async () => {
    const tracker: ResourceTracker = createResourceTracker({ stacks: 'all', scanIntervalMs: 0 });
    later(() => tracker.shutdown());
    const spec = { kind: 'app.session' };
    const error = await leakOf(
      () => {
        tracker.track({}, spec).release();
        const handle = tracker.track({}, spec); // MARK:own
        later(() => handle.release());
      },
      { tracker },
    );
    expect(error.leaks).toMatchObject([{ kind: 'app.session', count: 1 }]);
    expect(error.leaks[0]!.site).toMatch(new RegExp(`^${siteOf(here, 'own')}\\d+$`));
    await expectNoLeaks(() => tracker.track({}, spec).release(), { tracker });
  });

  it('reports each leak once: a second check does not report it again', async () => {
    const t = setInterval(() => {}, 60_000);
    later(() => clearInterval(t));
    const tracker = createResourceTracker({ stacks: 'all', scanIntervalMs: 0 });
    later(() => tracker.shutdown());
    const kept: object[] = [];
    const first = await leakOf(() => void kept.push(tracker.track({}, { kind: 'x' })), {
      tracker,
    });
    expect(first.leaks).toHaveLength(1);
    // A later check (the vitest entry's, after a test that asserted the leak) is clean.
    await expectNoLeaks(() => {}, { tracker });
  });

  it('counts objects garbage-collected without being closed', async () => {
    const tracker = createResourceTracker({ stacks: 'all', scanIntervalMs: 0 });
    later(() => tracker.shutdown());
    const collected = new Promise<void>((resolve) => tracker.onLeak(() => resolve()));
    const error = await leakOf(
      async () => {
        (() => tracker.track({}, { kind: 'app.handle' }))(); // MARK:dropped
        for (let i = 0; i < 3; i++) {
          await new Promise((resolve) => setImmediate(resolve));
          (globalThis as { gc?: () => void }).gc?.();
        }
        await collected;
      },
      { tracker },
    );
    expect(error.leaks).toMatchObject([{ kind: 'app.handle', reason: 'gc-unreleased' }]);
    expect(error.message).toMatch(/1 x app\.handle \(gc-unreleased\)/);
  });

  it('rethrows the error of fn unchanged and rejects bad input clearly', async () => {
    const failure = new Error('fn failed');
    await expect(
      expectNoLeaks(() => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    await expect(expectNoLeaks('x' as never)).rejects.toThrow(
      'expectNoLeaks: fn must be a function',
    );
    await expect(expectNoLeaks(() => {}, { ignoreKinds: 'timer' as never })).rejects.toThrow(
      '@trustflow/leak-test: option ignoreKinds must be an array of strings or RegExps',
    );
    await expect(expectNoLeaks(() => {}, { timeoutMs: -1 })).rejects.toThrow(
      '@trustflow/leak-test: option timeoutMs must be a non-negative number, got -1',
    );
    await expect(expectNoLeaks(() => {}, { tracker: {} as never })).rejects.toThrow(
      '@trustflow/leak-test: option tracker must be a resource tracker',
    );
  });
});
