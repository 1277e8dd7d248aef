// Churn workloads, measured in this process (launched plain or with the preload):
//   tcp    connect + close to a local server, 8 in flight (both ends are this process)
//   fs     open + read + close of a small file (fs.promises), and openSync/closeSync
//   await  an async call chain of awaits (what promise hooks would slow down)
// Reports operations per second (wall) and per CPU second of this process.
import { once } from 'node:events';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { report } from '../lib.mjs';

const workload = process.argv[2];
// Under the preload, measure the steady state: wait until its SDK is loaded (start-up is measured
// on its own, by instrument-startup.mjs).
await globalThis[Symbol.for('@trustflow/instrument')]?.ready;
const quick = process.env.BENCH_QUICK === '1';

// Warm-up, by time: until V8 has optimized the hot code of the configuration (the preload's
// wrappers and tracker as well as the workload), so that what is measured is the steady state.
// With a few hundred rounds of warm-up, the optimizing compiler's background threads were still
// busy with the preload's code in the measured window (about 100 ms of CPU on a 0.7 s window).
const warmupMs = Number(process.env.BENCH_WARMUP_MS ?? (quick ? 1000 : 1500));

/** Operations per wall second, and per CPU second of this process (steadier on a busy machine). */
let cpuRate = 0;
async function timed(n, round, parallel = 1) {
  const warm = performance.now() + warmupMs;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (performance.now() < warm) await round();
    }),
  );
  let left = n;
  const start = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (left-- > 0) await round();
    }),
  );
  const used = process.cpuUsage(cpu);
  cpuRate = (n * 1e6) / (used.user + used.system);
  return (n * 1000) / (performance.now() - start);
}

async function tcp() {
  const server = createServer((s) => s.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  const round = () =>
    new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      s.on('error', reject);
      s.on('close', resolve);
      s.resume();
    });
  const ops = await timed(quick ? 2000 : 24_000, round, 8);
  server.close();
  return ops;
}

async function fs() {
  const file = join(tmpdir(), `instrument-bench-${process.pid}.txt`);
  writeFileSync(file, 'x'.repeat(512));
  const buffer = Buffer.alloc(512);
  const round = async () => {
    const handle = await open(file, 'r');
    await handle.read(buffer, 0, 512, 0);
    await handle.close();
    closeSync(openSync(file, 'r'));
  };
  const ops = await timed(quick ? 4000 : 36_000, round, 4);
  await rm(file, { force: true });
  return ops;
}

async function awaits() {
  const leaf = async (i) => i + 1;
  const mid = async (i) => (await leaf(i)) + (await leaf(i));
  const round = async () => {
    let x = 0;
    for (let i = 0; i < 100; i++) x += await mid(i);
    return x;
  };
  // ops = awaited calls (3 per mid() call, 100 per round)
  const rate = (await timed(quick ? 3000 : 10_000, round)) * 300;
  cpuRate *= 300;
  return rate;
}

const run = { tcp, fs, await: awaits }[workload];
if (!run) throw new Error(`unknown workload ${workload}`);
const value = await run();
report({ value, cpu: cpuRate });
