import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, rmSync } from 'node:fs';
import { open as openHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { tcp } from '@libp2p/tcp';
import { createBufferPool } from '@trustflow/plugin-buffer-pool';
import { libp2pMetrics } from '@trustflow/plugin-libp2p';
import { createLibp2p } from 'libp2p';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { expectNoLeaks, expectNoMemoryGrowth } from '../src/index.js';
import { cleanup, later, server } from './helpers.js';

afterEach(cleanup);

const RUNS = 20;
const file = join(tmpdir(), `leak-test-repeat-${process.pid}.txt`);
afterAll(() => rmSync(file, { force: true }));

describe(`the clean cases, ${RUNS} runs each, never fail`, () => {
  it('sockets, servers, timers, fds, FileHandles, pooled buffers', async () => {
    const { port } = await server();
    const pool = createBufferPool();
    later(() => pool.close());
    for (let run = 0; run < RUNS; run++) {
      await expectNoLeaks(async () => {
        const socket = connect(port, '127.0.0.1');
        await once(socket, 'connect');
        socket.destroy();
      });
      await expectNoLeaks(async () => {
        const s = createServer().listen(0, '127.0.0.1');
        await once(s, 'listening');
        s.close();
      });
      await expectNoLeaks(async () => {
        clearInterval(setInterval(() => {}, 1000));
        await new Promise((resolve) => setTimeout(resolve, 1));
        setTimeout(() => {}, 5);
      });
      await expectNoLeaks(async () => {
        closeSync(openSync(file, 'w'));
        await (await openHandle(file, 'r')).close();
      });
      await expectNoLeaks(() => pool.acquire(4096).release());
    }
  });

  it('libp2p streams', async () => {
    const options = {
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { enabled: false },
    };
    const a = await createLibp2p({ ...options, metrics: libp2pMetrics() });
    later(() => a.stop());
    const b = await createLibp2p(options);
    later(() => b.stop());
    await b.handle('/repeat/1', (stream) => {
      stream.addEventListener('remoteCloseWrite', () => void stream.close());
    });
    const address = b.getMultiaddrs()[0]!;
    await a.dial(address);
    for (let run = 0; run < RUNS; run++) {
      await expectNoLeaks(async () => {
        const stream = await a.dialProtocol(address, '/repeat/1');
        const closed = once(stream, 'close');
        await stream.close();
        await closed;
      });
    }
  });

  it('memory growth of a clean function', async () => {
    for (let run = 0; run < RUNS; run++) {
      let last: unknown;
      const result = await expectNoMemoryGrowth((i) => {
        last = { i, payload: new Array(16).fill(i) };
        return last;
      });
      expect(result.verdict).not.toBe('growing');
    }
  }, 120_000);

  it(`the vitest entry on a clean suite (${RUNS} repeats of each test)`, async () => {
    const suite = fileURLToPath(
      new URL('./fixtures/vitest-clean/vitest.config.ts', import.meta.url),
    );
    const vitest = join(
      dirname(createRequire(import.meta.url).resolve('vitest/package.json')),
      'vitest.mjs',
    );
    const output = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [vitest, 'run', '--config', suite],
        { env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, timeout: 60_000 },
        (error, stdout, stderr) =>
          error ? reject(new Error(`${stdout}\n${stderr}`)) : resolve(stdout),
      ),
    );
    expect(output).toMatch(/Tests {2}5 passed \(5\)/);
  }, 90_000);
});
