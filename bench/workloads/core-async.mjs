// Workloads for the handle sources: argv[2] = tcp | timers | await; env TF_SOURCE=on (the
// async-hooks source) | handles (the handles source) | off.
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import {
  createAsyncHooksSource,
  createHandlesSource,
  createResourceTracker,
} from '@trustflow/core';
import { report } from '../lib.mjs';

const workload = process.argv[2];
const quick = process.env.BENCH_QUICK === '1';
if (process.env.TF_SOURCE === 'on') {
  const tracker = createResourceTracker();
  createAsyncHooksSource().enable({ tracker });
} else if (process.env.TF_SOURCE === 'handles') {
  const tracker = createResourceTracker();
  createHandlesSource().enable({ tracker });
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
  const n = quick ? 800 : 5000;
  for (let i = 0; i < 300; i++) await round();
  const start = performance.now();
  // 8 connections in flight at a time
  let done = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (done < n) {
        done++;
        await round();
      }
    }),
  );
  const ops = (n * 1000) / (performance.now() - start);
  server.close();
  return ops;
}

async function timers() {
  const n = quick ? 60_000 : 300_000;
  const start = performance.now();
  let fired = 0;
  await new Promise((resolve) => {
    for (let i = 0; i < n; i++) {
      const t = setTimeout(() => {
        if (++fired === n / 2) resolve();
      }, 1);
      if (i % 2 === 0) clearTimeout(t);
    }
  });
  return (n * 1000) / (performance.now() - start);
}

async function awaits() {
  const n = quick ? 1_000_000 : 3_000_000;
  const step = async (i) => i + 1;
  let x = 0;
  for (let i = 0; i < 100_000; i++) x = await step(x);
  const start = performance.now();
  for (let i = 0; i < n; i++) x = await step(x);
  return (n * 1000) / (performance.now() - start);
}

const fn = { tcp, timers, await: awaits }[workload];
if (!fn) throw new Error(`core-async: unknown workload ${workload}`);
report({ value: await fn() });
