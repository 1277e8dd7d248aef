// fs open/close churn for the fs-net suite. argv[2] = sync | promises; env TF_PLUGIN = off | on |
// sdk (on, with an in-memory OpenTelemetry metrics SDK instead of the no-op global API).
// Prints operations per second (wall clock) and per CPU-second of this process.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { report } from '../lib.mjs';
import { enablePlugins } from './fs-net-setup.mjs';

const mode = process.argv[2] ?? 'sync';
const quick = process.env.BENCH_QUICK === '1';
await enablePlugins(process.env.TF_PLUGIN ?? 'off', 'fs');

const dir = mkdtempSync(join(tmpdir(), 'trustflow-bench-fs-'));
const file = join(dir, 'data');
writeFileSync(file, 'x');

const sync = () => {
  for (let i = 0; i < 200; i++) closeSync(openSync(file, 'r'));
  return 200;
};
const promises = async () => {
  for (let i = 0; i < 20; i++) {
    const handle = await open(file, 'r');
    await handle.close();
  }
  return 20;
};
const fn = { sync, promises }[mode];
if (!fn) throw new Error(`fs-churn: unknown mode ${mode}`);

async function measure(ms) {
  let ops = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const deadline = start + ms;
  while (performance.now() < deadline) ops += await fn();
  const wall = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  return { value: (ops * 1000) / wall, cpu: (ops * 1e6) / (cpu.user + cpu.system) };
}

await measure(300);
const result = await measure(quick ? 700 : 2000);
rmSync(dir, { recursive: true, force: true });
report(result);
