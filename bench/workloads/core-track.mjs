// Cost of track()+release() per resource, in one process, for the stack mode given as argv[2].
import { createResourceTracker } from '@trustflow/core';
import { report } from '../lib.mjs';

const mode = process.argv[2] ?? 'sampled';
const n = Number(process.argv[3] ?? 1_000_000);
const tracker = createResourceTracker({ stacks: mode, scanIntervalMs: 0 });
const spec = { kind: 'bench.obj' };
function run(count) {
  for (let i = 0; i < count; i++) tracker.track({}, spec).release();
}
run(n / 5);
const start = performance.now();
run(n);
const elapsed = performance.now() - start;
report({ value: (elapsed * 1000) / n });
