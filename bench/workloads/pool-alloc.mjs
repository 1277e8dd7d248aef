// Cost of getting a buffer of argv[3] bytes, writing to it and letting it go, for argv[2]:
// pool (acquire + release from createBufferPool(), default tracker, SDK meter provider
// registered as the preload would), alloc (Buffer.alloc) or unsafe (Buffer.allocUnsafe).
// Reports CPU ns per operation and the GC pause time per 10 000 operations.
import { setImmediate as tick } from 'node:timers/promises';
import { report } from '../lib.mjs';
import { gcClock, installMeterProvider, own } from './libp2p-common.mjs';

const mode = process.argv[2] ?? 'pool';
const size = Number(process.argv[3] ?? 32768);
const ops = Number(process.argv[4] ?? 400_000);

let op;
let sink = 0;
if (mode === 'pool') {
  await installMeterProvider();
  const { createBufferPool } = await own('plugin-buffer-pool');
  const pool = createBufferPool();
  op = () => {
    const buf = pool.acquire(size);
    buf[0] = 1;
    buf[size - 1] = 2;
    sink += buf[size >> 1];
    buf.release();
  };
} else if (mode === 'alloc') {
  op = () => {
    const buf = Buffer.alloc(size);
    buf[0] = 1;
    buf[size - 1] = 2;
    sink += buf[size >> 1];
  };
} else if (mode === 'unsafe') {
  op = () => {
    const buf = Buffer.allocUnsafe(size);
    buf[0] = 1;
    buf[size - 1] = 2;
    sink += buf[size >> 1];
  };
} else {
  throw new Error(`unknown mode ${mode}`);
}

// batches with a macrotask between them, so GC entries are delivered as they happen
async function run(count) {
  const batch = 1000;
  for (let done = 0; done < count; done += batch) {
    for (let i = 0; i < batch; i++) op();
    await tick();
  }
}

await run(ops / 5); // warm-up
const gc = await gcClock();
gc.take();
const before = process.cpuUsage();
await run(ops);
const cpu = process.cpuUsage(before);
await tick();
const gcMs = gc.take();
gc.stop();
const cpuMs = (cpu.user + cpu.system) / 1000;
if (mode !== 'unsafe' && sink !== 0) throw new Error('buffers were not zeroed');
report({ value: (cpuMs * 1e6) / ops, gcMsPer10k: (gcMs * 10_000) / ops });
