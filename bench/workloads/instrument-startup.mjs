// Start-to-exit time of a program that does nothing: spawns `node [args] noop` N times and
// reports the median wall time in ms. argv: the node arguments to test (may be empty).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, report } from '../lib.mjs';

const quick = process.env.BENCH_QUICK === '1';
const noop = join(tmpdir(), `instrument-bench-noop-${process.pid}.mjs`);
writeFileSync(noop, '');
const env = { ...process.env };
delete env.NODE_OPTIONS;
const times = [];
for (let i = 0; i < (quick ? 7 : 15); i++) {
  const start = performance.now();
  const r = spawnSync(process.execPath, [...process.argv.slice(2), noop], { env });
  if (r.status !== 0) throw new Error(`noop exited with ${r.status}: ${r.stderr}`);
  times.push(performance.now() - start);
}
report({ value: median(times) });
