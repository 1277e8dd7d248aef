// Buffer-heavy chunk processing through a stream pipeline: a source of 64 KiB chunks, a transform
// that allocates an output chunk per input chunk and mixes the bytes, and a sink that checksums.
// MiB per second.

import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { bench, finish } from './compare-common.mjs';

const CHUNK = 64 * 1024;
const PER_ROUND = 64; // 4 MiB per round
const seed = Buffer.alloc(CHUNK, 7);

async function round() {
  let produced = 0;
  let sum = 0;
  await pipeline(
    new Readable({
      read() {
        if (produced++ === PER_ROUND) return this.push(null);
        const chunk = Buffer.allocUnsafe(CHUNK);
        seed.copy(chunk);
        this.push(chunk);
      },
    }),
    new Transform({
      transform(chunk, _enc, done) {
        const out = Buffer.allocUnsafe(chunk.length);
        for (let i = 0; i < chunk.length; i += 64) out[i] = chunk[i] ^ (i & 0xff);
        done(null, out);
      },
    }),
    new Writable({
      write(chunk, _enc, done) {
        sum = (sum + chunk[0] + chunk[chunk.length - 64]) | 0;
        done();
      },
    }),
  );
  return (PER_ROUND * CHUNK) / 1048576;
}

const result = await bench(round, { unit: 'MiB/s' });
await finish(result);
