import type { Libp2p, Stream } from '@libp2p/interface';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withStream } from '../src/index.js';
import { cleanup, closed, instrumentedNode, plainNode, readAll } from './helpers.js';

afterEach(cleanup);

/** Records every close() and abort() call made on the stream, then calls the original. */
function spy(stream: Stream): string[] {
  const calls: string[] = [];
  const close = stream.close.bind(stream);
  const abort = stream.abort.bind(stream);
  stream.close = (options) => {
    calls.push('close');
    return close(options);
  };
  stream.abort = (error) => {
    calls.push(`abort:${error.name}`);
    abort(error);
  };
  return calls;
}

interface Remote {
  /** What the remote end read, and how its stream ended. */
  outcome: Promise<{ data: string; error?: string }>;
}

let client: Libp2p;
let server: Libp2p;
let remotes: Remote[];

beforeEach(async () => {
  client = (await instrumentedNode()).node;
  server = await plainNode();
  remotes = [];
  // reads everything, answers with 'ok' unless told to stay silent
  await server.handle('/ws/1', (s) => {
    remotes.push({
      outcome: (async () => {
        const ended = closed(s);
        let error: string | undefined;
        s.addEventListener('close', (e) => {
          error = e.error?.name;
        });
        let data = '';
        try {
          data = Buffer.from(await readAll(s)).toString();
          if (!data.startsWith('silent')) s.send(Buffer.from('ok'));
          await s.close();
        } catch {
          // reset by the other end
        }
        await ended;
        return { data, ...(error ? { error } : {}) };
      })(),
    });
  });
  // never reads: pausing stops yamux window updates, so the sender's window fills up
  await server.handle('/stuck/1', (s) => s.pause());
});

async function open(protocol = '/ws/1'): Promise<Stream> {
  return client.dialProtocol(server.getMultiaddrs()[0]!, protocol);
}

describe('withStream', () => {
  it('closes the stream once when fn succeeds, and returns its result', async () => {
    const stream = await open();
    // fn half-closes to get the answer (request/response); only withStream's calls are recorded
    const halfClose = stream.close.bind(stream);
    const calls = spy(stream);
    const result = await withStream(stream, async (s) => {
      s.send(Buffer.from('hello'));
      await halfClose();
      return Buffer.from(await readAll(s)).toString();
    });
    expect(result).toBe('ok');
    expect(calls).toEqual(['close']);
    expect(await remotes[0]!.outcome).toEqual({ data: 'hello' });
    await closed(stream);
    expect(stream.status).toBe('closed');

    const second = await open();
    const calls2 = spy(second);
    const value = await withStream(second, (s) => {
      s.send(Buffer.from('sync'));
      return 42;
    });
    expect(value).toBe(42);
    expect(calls2).toEqual(['close']);
    expect(await remotes[1]!.outcome).toEqual({ data: 'sync' });
  });

  it('aborts the stream once when fn throws or rejects, and rethrows', async () => {
    const boom = new Error('boom');
    for (const fn of [
      () => {
        throw boom;
      },
      async (s: Stream) => {
        s.send(Buffer.from('partial'));
        await Promise.resolve();
        throw boom;
      },
    ]) {
      const stream = await open();
      const calls = spy(stream);
      await expect(withStream(stream, fn)).rejects.toBe(boom);
      expect(calls).toEqual(['abort:Error']);
      expect(stream.status).toBe('aborted');
    }
    const outcomes = await Promise.all(remotes.map((r) => r.outcome));
    for (const o of outcomes) expect(o.error).toBe('StreamResetError');
  });

  it('aborts the stream once when the deadline passes, and ignores what fn does later', async () => {
    const stream = await open();
    const calls = spy(stream);
    let fnSettled: Promise<unknown> = Promise.resolve();
    const started = Date.now();
    const error = await withStream(
      stream,
      (s) => {
        // waits for an answer that never comes (the remote waits for our end of input)
        fnSettled = readAll(s).then(
          () => 'ended',
          (e: Error) => e.name,
        );
        return fnSettled;
      },
      { timeoutMs: 100 },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DOMException);
    expect((error as DOMException).name).toBe('TimeoutError');
    expect((error as DOMException).message).toBe('withStream: timed out after 100 ms');
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    await fnSettled;
    expect(calls).toEqual(['abort:TimeoutError']);
    expect((await remotes[0]!.outcome).error).toBe('StreamResetError');
  });

  it("aborts the stream once when the caller's signal aborts, with the signal's reason", async () => {
    const stream = await open();
    const calls = spy(stream);
    const controller = new AbortController();
    const reason = new Error('caller gave up');
    const outcome = withStream(
      stream,
      async (s, signal) => {
        s.send(Buffer.from('x'));
        controller.abort(reason);
        expect(signal.aborted).toBe(true);
        expect(signal.reason).toBe(reason);
        return 'too late';
      },
      { signal: controller.signal },
    );
    await expect(outcome).rejects.toBe(reason);
    expect(calls).toEqual(['abort:Error']);

    // already aborted: fn never runs
    const again = await open();
    const calls2 = spy(again);
    let ran = false;
    await expect(
      withStream(
        again,
        () => {
          ran = true;
        },
        { signal: AbortSignal.abort(reason) },
      ),
    ).rejects.toBe(reason);
    expect(ran).toBe(false);
    expect(calls2).toEqual(['abort:Error']);
  });

  it('aborts after a close that cannot finish within the deadline', async () => {
    const stream = await open('/stuck/1');
    const calls = spy(stream);
    const error = await withStream(
      stream,
      (s) => {
        s.send(new Uint8Array(8 * 1024 * 1024)); // far more than the remote lets us send
        return 'sent';
      },
      { timeoutMs: 200 },
    ).catch((e: unknown) => e);
    expect((error as DOMException).name).toBe('TimeoutError');
    expect(calls).toEqual(['close', 'abort:TimeoutError']);
    expect(stream.status).toBe('aborted');
  });

  it('names bad arguments', async () => {
    const stream = await open();
    await expect(withStream({} as Stream, () => 1)).rejects.toThrow(
      'withStream: stream must be a libp2p stream (with close() and abort())',
    );
    await expect(withStream(stream, 'x' as never)).rejects.toThrow(
      'withStream: fn must be a function, got string',
    );
    await expect(withStream(stream, () => 1, { timeoutMs: -1 })).rejects.toThrow(
      'withStream: option timeoutMs must be a positive number of ms, got -1',
    );
    await expect(withStream(stream, () => 1, { signal: {} as AbortSignal })).rejects.toThrow(
      'withStream: option signal must be an AbortSignal',
    );
    expect(stream.status).toBe('open');
    stream.abort(new Error('done'));
  });
});
