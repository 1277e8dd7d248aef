import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Libp2p, Stream } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { createResourceTracker } from '@trustflow/core';
import { libp2pMetrics } from '@trustflow/plugin-libp2p';
import { createLibp2p, type Libp2pOptions } from 'libp2p';
import { afterEach, describe, expect, it } from 'vitest';
import { expectNoLeaks, LeakError } from '../src/index.js';
import { cleanup, later, siteOf } from './helpers.js';

afterEach(cleanup);

const here = import.meta.url;
const PROTOCOL = '/leak-test/echo/1.0.0';

async function node(metrics?: Libp2pOptions['metrics']): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    ...(metrics ? { metrics } : {}),
  });
  later(() => n.stop());
  return n;
}

function closed(stream: Stream): Promise<void> {
  if (stream.status !== 'open' && stream.status !== 'closing') return Promise.resolve();
  return new Promise((resolve) =>
    stream.addEventListener('close', () => resolve(), { once: true }),
  );
}

/** Two connected nodes; `a` records its streams in `tracker` (or the default tracker). */
async function pair(tracker?: ReturnType<typeof createResourceTracker>) {
  const a = await node(libp2pMetrics(tracker ? { tracker } : {}));
  const b = await node();
  await b.handle(PROTOCOL, (stream) => {
    // Closes its side once the dialer has closed its own.
    stream.addEventListener('remoteCloseWrite', () => void stream.close());
  });
  await a.dial(b.getMultiaddrs()[0]!);
  return { a, b, address: b.getMultiaddrs()[0]! };
}

describe('libp2p streams', () => {
  it('catches a protocol stream left open, with the line that opened it (own tracker)', async () => {
    const tracker = createResourceTracker({ stacks: 'all', scanIntervalMs: 0 });
    later(() => tracker.shutdown());
    const { a, address } = await pair(tracker);
    const error = await expectNoLeaks(
      async () => {
        const stream = await a.dialProtocol(address, PROTOCOL); // MARK:stream
        later(() => stream.abort(new Error('test over')));
      },
      { tracker, timeoutMs: 200 },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LeakError);
    const leaks = (error as LeakError).leaks;
    expect(leaks).toMatchObject([{ kind: 'libp2p.stream', count: 1, reason: 'open-at-exit' }]);
    expect(leaks[0]!.site).toMatch(new RegExp(`^${siteOf(here, 'stream')}\\d+$`));
    expect((error as LeakError).message).toContain(`at ${leaks[0]!.site}`);

    // The clean equivalent: the same stream, closed.
    await expectNoLeaks(
      async () => {
        const stream = await a.dialProtocol(address, PROTOCOL);
        await stream.close();
        await closed(stream);
      },
      { tracker },
    );
  });

  it('sees streams of libp2pMetrics() through the default tracker, with no option at all', async () => {
    const { a, address } = await pair();
    const error = await expectNoLeaks(
      async () => {
        const stream = await a.dialProtocol(address, PROTOCOL); // MARK:default-stream
        later(() => stream.abort(new Error('test over')));
      },
      { timeoutMs: 200 },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LeakError);
    const streams = (error as LeakError).leaks.filter((l) => l.kind === 'libp2p.stream');
    expect(streams).toHaveLength(1);
    expect(streams[0]!.site).toMatch(new RegExp(`^${siteOf(here, 'default-stream')}\\d+$`));

    await expectNoLeaks(async () => {
      const stream = await a.dialProtocol(address, PROTOCOL);
      await stream.close();
      await closed(stream);
    });
  });
});
