import { spawn } from 'node:child_process';
import { getEventListeners, once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createScope, createShutdownCoordinator, withTimeout } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A loopback server that accepts connections and never answers (for work that must time out). */
async function silentServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { server, port: (server.address() as { port: number }).port, sockets };
}

describe('createScope', () => {
  it('runs cleanups once, last registered first, awaiting each (sync and async mixed)', async () => {
    const order: string[] = [];
    const scope = createScope();
    scope.defer(() => {
      order.push('a');
    });
    scope.defer(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      order.push('b');
    });
    scope.defer(() => {
      order.push('c');
    });
    expect(scope.state).toBe('open');
    expect(scope.signal.aborted).toBe(false);
    const first = scope.close();
    expect(scope.state).toBe('closing');
    expect(scope.signal.aborted).toBe(true);
    expect((scope.signal.reason as DOMException).name).toBe('AbortError');
    await Promise.all([first, scope.close(), scope[Symbol.asyncDispose]()]);
    scope[Symbol.dispose]();
    expect(order).toEqual(['c', 'b', 'a']);
    expect(scope.state).toBe('closed');
  });

  it('works with `using` and `await using`', async () => {
    const order: string[] = [];
    {
      using scope = createScope();
      scope.defer(() => order.push('sync 1'));
      scope.defer(() => order.push('sync 2'));
      order.push('body');
    }
    {
      await using scope = createScope();
      scope.defer(async () => {
        await Promise.resolve();
        order.push('async 1');
      });
      scope.use({ [Symbol.asyncDispose]: async () => void order.push('async 2') });
      scope.use({ [Symbol.dispose]: () => void order.push('async 3') });
      scope.use(null);
      order.push('body 2');
    }
    expect(order).toEqual(['body', 'sync 2', 'sync 1', 'body 2', 'async 3', 'async 2', 'async 1']);
  });

  it('closes a real server and socket on scope exit', async () => {
    const server = createServer();
    {
      await using scope = createScope({ name: 'conn' });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      scope.defer(() => new Promise((resolve) => server.close(resolve)), 'server');
      const client = connect((server.address() as { port: number }).port, '127.0.0.1');
      scope.defer(() => void client.destroy(), 'client');
      await once(client, 'connect');
    }
    expect(server.listening).toBe(false);
  });

  it('keeps every cleanup error: one as is, several as an AggregateError in run order', async () => {
    const one = createScope();
    const e1 = new Error('e1');
    one.defer(() => {
      throw e1;
    });
    await expect(one.close()).rejects.toBe(e1);

    const ran: string[] = [];
    const many = createScope({ name: 'db' });
    const e2 = new Error('e2');
    const e3 = new Error('e3');
    many.defer(() => {
      ran.push('first');
      throw e2;
    });
    many.defer(() => void ran.push('middle'));
    many.defer(async () => {
      ran.push('last');
      throw e3;
    });
    const error = await many.close().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AggregateError);
    expect((error as AggregateError).errors).toEqual([e3, e2]);
    expect((error as Error).message).toBe('2 cleanups of scope "db" failed');
    expect(ran).toEqual(['last', 'middle', 'first']);
    // Delivered once: later closes do not throw the same errors again.
    await expect(many.close()).resolves.toBeUndefined();
    expect(() => many[Symbol.dispose]()).not.toThrow();
  });

  it('`using` keeps both the body error and the cleanup error (SuppressedError)', () => {
    const body = new Error('body');
    const cleanup = new Error('cleanup');
    let caught: unknown;
    try {
      using scope = createScope();
      scope.defer(() => {
        throw cleanup;
      });
      throw body;
    } catch (error) {
      caught = error;
    }
    expect((caught as Error).name).toBe('SuppressedError');
    expect((caught as { error: unknown }).error).toBe(cleanup);
    expect((caught as { suppressed: unknown }).suppressed).toBe(body);
  });

  it('a synchronous dispose refuses async cleanups loudly and still reports their rejection', async () => {
    const scope = createScope();
    const late = new Error('rejected later');
    scope.defer(() => Promise.reject(late), 'flush');
    let caught: unknown;
    try {
      scope[Symbol.dispose]();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(TypeError);
    expect((caught as Error).message).toMatch(
      /flush returned a promise during a synchronous dispose/,
    );
    await new Promise((resolve) => setImmediate(resolve));
    await expect(scope.close()).rejects.toBe(late);
  });

  it('closes when its signal aborts, with that reason, and removes its listener when closed', async () => {
    const parent = new AbortController();
    const ran: unknown[] = [];
    const scope = createScope({ signal: parent.signal });
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(1);
    scope.defer(() => void ran.push(scope.signal.reason));
    const failure = new Error('cleanup failed during abort');
    scope.defer(() => {
      throw failure;
    });
    const reason = new Error('stop');
    parent.abort(reason);
    expect(scope.signal.aborted).toBe(true);
    expect(scope.signal.reason).toBe(reason);
    // The errors of a close started by the signal go to the next caller of close().
    await expect(scope.close()).rejects.toBe(failure);
    expect(ran).toEqual([reason]);

    const other = new AbortController();
    const closedEarly = createScope({ signal: other.signal });
    await closedEarly.close();
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0);

    const already = createScope({ signal: AbortSignal.abort('gone') });
    expect(already.signal.reason).toBe('gone');
    await already.close();
    expect(already.state).toBe('closed');
  });

  it('remove functions drop a cleanup without running it, and many add/remove cycles stay cheap', async () => {
    const scope = createScope();
    const ran: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const remove = scope.defer(() => void ran.push(i));
      if (i % 1000 !== 0) {
        remove();
        remove();
      }
    }
    await scope.close();
    expect(ran).toEqual([9000, 8000, 7000, 6000, 5000, 4000, 3000, 2000, 1000, 0]);
  });

  it('a cleanup that closes its own scope does not wait for itself', async () => {
    const scope = createScope();
    const order: string[] = [];
    scope.defer(() => void order.push('outer'));
    scope.defer(async () => {
      await scope.close();
      scope[Symbol.dispose]();
      order.push('inner');
    });
    await scope.close();
    expect(order).toEqual(['inner', 'outer']);
  });

  it('cleanups added while closing run next; added after close they run at once', async () => {
    const scope = createScope();
    const order: string[] = [];
    scope.defer(() => void order.push('first registered'));
    scope.defer(() => {
      order.push('adds one');
      scope.defer(() => void order.push('added while closing'));
    });
    await scope.close();
    expect(order).toEqual(['adds one', 'added while closing', 'first registered']);
    scope.defer(() => void order.push('added after close'));
    expect(order.at(-1)).toBe('added after close');
    const late = new Error('late');
    expect(() =>
      scope.defer(() => {
        throw late;
      }),
    ).toThrow(late);
  });

  it('rejects bad input with a one-line TypeError', () => {
    const scope = createScope();
    expect(() => scope.defer(42 as never)).toThrow(/scope.defer: cleanup must be a function/);
    expect(() => scope.use({} as never)).toThrow(/scope.use: value is not disposable/);
    expect(() => createScope({ signal: {} as never })).toThrow(
      /option signal must be an AbortSignal/,
    );
  });
});

describe('withTimeout', () => {
  it('returns the value and runs the cleanups after the work', async () => {
    const order: string[] = [];
    let seen: AbortSignal | undefined;
    const value = await withTimeout(async (scope) => {
      seen = scope.signal;
      scope.defer(() => void order.push('cleanup'));
      order.push('work');
      return 42;
    }, 1000);
    expect(value).toBe(42);
    expect(order).toEqual(['work', 'cleanup']);
    expect(seen?.aborted).toBe(true);
  });

  it('aborts work that takes too long, closes its socket, and rejects with a TimeoutError', async () => {
    const { port, sockets } = await silentServer();
    let client: Socket | undefined;
    let abortedWith: unknown;
    const started = performance.now();
    const error = await withTimeout(
      async (scope) => {
        client = connect(port, '127.0.0.1');
        scope.defer(() => void client!.destroy(), 'client socket');
        scope.signal.addEventListener('abort', () => {
          abortedWith = scope.signal.reason;
        });
        await once(client, 'connect');
        // Waits for an answer that never comes and ignores the signal on purpose.
        await new Promise(() => {});
      },
      100,
      { name: 'fetch answer' },
    ).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(error).toBeInstanceOf(DOMException);
    expect((error as DOMException).name).toBe('TimeoutError');
    expect((error as DOMException).message).toBe('fetch answer timed out after 100 ms');
    expect(abortedWith).toBe(error);
    expect(client!.destroyed).toBe(true);
    // The server side sees the connection go away.
    while (sockets.size > 0) await new Promise((resolve) => setImmediate(resolve));
  });

  it('a failure plus a cleanup failure is a SuppressedError holding both', async () => {
    const failure = new Error('work failed');
    const cleanupError = new Error('cleanup failed');
    const error = await withTimeout(async (scope) => {
      scope.defer(() => {
        throw cleanupError;
      });
      throw failure;
    }, 1000).catch((e: unknown) => e);
    expect((error as Error).name).toBe('SuppressedError');
    expect((error as { error: unknown }).error).toBe(cleanupError);
    expect((error as { suppressed: unknown }).suppressed).toBe(failure);

    const onlyCleanup = await withTimeout((scope) => {
      scope.defer(() => {
        throw cleanupError;
      });
      return 'value';
    }, 1000).catch((e: unknown) => e);
    expect(onlyCleanup).toBe(cleanupError);
  });

  it('follows an outer signal, and rejects at once when it is already aborted', async () => {
    const outer = new AbortController();
    const ran: string[] = [];
    const pending = withTimeout(
      async (scope) => {
        scope.defer(() => void ran.push('cleanup'));
        await new Promise(() => {});
      },
      60_000,
      { signal: outer.signal },
    );
    const reason = new Error('user cancelled');
    outer.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(ran).toEqual(['cleanup']);
    let called = false;
    await expect(
      withTimeout(
        () => {
          called = true;
        },
        10,
        { signal: AbortSignal.abort('before') },
      ),
    ).rejects.toBe('before');
    expect(called).toBe(false);
  });

  it('rejects a bad timeout', async () => {
    await expect(withTimeout(() => 1, -1)).rejects.toThrow(
      'withTimeout: ms must be a non-negative finite number, got -1',
    );
    await expect(withTimeout(() => 1, Number.NaN)).rejects.toThrow(/got NaN/);
  });
});

describe('createShutdownCoordinator', () => {
  it('touches no signal handler until installed', () => {
    const before = ['SIGTERM', 'SIGINT'].map((s) => process.listenerCount(s));
    const coordinator = createShutdownCoordinator();
    coordinator.defer(() => {});
    expect(['SIGTERM', 'SIGINT'].map((s) => process.listenerCount(s))).toEqual(before);
    const uninstall = coordinator.install();
    expect(['SIGTERM', 'SIGINT'].map((s) => process.listenerCount(s))).toEqual(
      before.map((n) => n + 1),
    );
    expect(coordinator.install()).toBe(uninstall);
    uninstall();
    expect(['SIGTERM', 'SIGINT'].map((s) => process.listenerCount(s))).toEqual(before);
  });

  it('runs cleanups in reverse order, keeps every error, and returns the same result twice', async () => {
    const coordinator = createShutdownCoordinator({ deadlineMs: 5000 });
    const order: string[] = [];
    const e1 = new Error('db close failed');
    const e2 = new Error('flush failed');
    coordinator.defer(() => {
      order.push('db');
      throw e1;
    }, 'db');
    coordinator.defer(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      order.push('server');
    }, 'server');
    coordinator.defer(async () => {
      order.push('telemetry');
      throw e2;
    }, 'telemetry');
    const removed = coordinator.defer(() => void order.push('removed'));
    removed();
    const result = await coordinator.shutdown('test');
    expect(order).toEqual(['telemetry', 'server', 'db']);
    expect(result.reason).toBe('test');
    expect(result.timedOut).toBe(false);
    expect(result.errors).toEqual([e2, e1]);
    expect(result.unfinished).toEqual([]);
    expect(coordinator.signal.aborted).toBe(true);
    expect(await coordinator.shutdown('again')).toBe(result);
    expect(order).toHaveLength(3);
  });

  it('stops waiting at the deadline, starts the rest with an aborted signal, and lists what did not finish', async () => {
    const coordinator = createShutdownCoordinator({ deadlineMs: 150 });
    const seen: { name: string; abortedAtStart: boolean }[] = [];
    const lateError = new Error('gave up');
    coordinator.defer((deadline) => {
      seen.push({ name: 'first registered', abortedAtStart: deadline.aborted });
      // Started after the deadline: it sees the aborted signal and gives up a moment later.
      return new Promise((_, reject) => setImmediate(() => reject(lateError)));
    }, 'first registered');
    coordinator.defer((deadline) => {
      seen.push({ name: 'hangs', abortedAtStart: deadline.aborted });
      return new Promise(() => {});
    }, 'hangs');
    coordinator.defer(() => void seen.push({ name: 'quick', abortedAtStart: false }), 'quick');
    const started = performance.now();
    const result = await coordinator.shutdown();
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(5000);
    expect(result.timedOut).toBe(true);
    expect(result.unfinished).toEqual(['hangs', 'first registered']);
    expect(seen).toEqual([
      { name: 'quick', abortedAtStart: false },
      { name: 'hangs', abortedAtStart: false },
      { name: 'first registered', abortedAtStart: true },
    ]);
    // The cleanup that was still running at the deadline reports its error late: it is kept.
    while (result.errors.length === 0) await new Promise((resolve) => setImmediate(resolve));
    expect(result.errors).toEqual([lateError]);
  });

  it('shuts down on an emitted signal and hands the result to onResult (no real signal)', async () => {
    let delivered: unknown;
    const done = new Promise<void>((resolve) => {
      const coordinator = createShutdownCoordinator({
        onResult: (result) => {
          delivered = result;
          resolve();
        },
      });
      coordinator.defer(() => {}, 'noop');
      coordinator.install(['SIGUSR2']);
    });
    // With another listener present the coordinator does not re-raise the signal.
    const keepAlive = () => {};
    process.on('SIGUSR2', keepAlive);
    cleanups.push(() => process.removeListener('SIGUSR2', keepAlive));
    const before = process.listenerCount('SIGUSR2');
    process.emit('SIGUSR2', 'SIGUSR2');
    await done;
    expect((delivered as { reason: unknown }).reason).toBe('SIGUSR2');
    await new Promise((resolve) => setImmediate(resolve));
    expect(process.listenerCount('SIGUSR2')).toBe(before - 1);
  });

  it('rejects a bad deadline', () => {
    expect(() => createShutdownCoordinator({ deadlineMs: -5 })).toThrow(
      'createShutdownCoordinator: option deadlineMs must be a non-negative finite number, got -5',
    );
  });
});

describe('createShutdownCoordinator in a real process', () => {
  const child = fileURLToPath(new URL('./fixtures/prevention-shutdown.mjs', import.meta.url));

  function run(mode: string, signals: NodeJS.Signals[]) {
    const proc = spawn(process.execPath, [child, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stderr.on('data', (d) => {
      err += d;
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.on('close', (code, signal) => resolve({ code, signal })),
    );
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('ready\n') && signals.length > 0) proc.kill(signals.shift());
    });
    return exited.then((status) => ({ ...status, out, err }));
  }

  it('runs cleanups in reverse order on SIGTERM, then ends by SIGTERM', async () => {
    const result = await run('normal', ['SIGTERM']);
    expect(result.out).toBe('ready\ncleanup: client\ncleanup: server\ncleanup: first\n');
    expect(result.signal).toBe('SIGTERM');
    expect(result.err).toBe('');
  });

  it('ends by the signal at the deadline when a cleanup hangs, and says which', async () => {
    const result = await run('hang', ['SIGINT']);
    expect(result.signal).toBe('SIGINT');
    expect(result.out).toBe('ready\ncleanup: hangs\ncleanup: first\n');
    expect(result.err).toMatch(/deadline passed; unfinished cleanups: hangs, first/);
  });
});
