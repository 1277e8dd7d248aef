// Retained heap per live tracked resource (no stack): heap with N objects tracked minus heap with
// the same N objects untracked, divided by N.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createResourceTracker } from '@trustflow/core';
import { report } from '../lib.mjs';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const n = Number(process.argv[2] ?? 200_000);
const heap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const withClose = process.argv[3] === 'close';
const objects = Array.from({ length: n }, () => ({}));
const base = heap();
const tracker = createResourceTracker({ stacks: 'off', scanIntervalMs: 0 });
const spec = withClose ? { kind: 'bench.obj', close: (r) => r } : { kind: 'bench.obj' };
const handles = objects.map((o) => tracker.track(o, spec));
const tracked = heap();
report({ value: (tracked - base) / n, live: handles.length });
