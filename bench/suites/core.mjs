import { join } from 'node:path';
import { interleaved, root } from '../lib.mjs';

export const title = 'core tracker, handles and async-hooks sources';

const w = (name) => join(root, 'bench', 'workloads', name);

export async function run({ quick }) {
  const reps = quick ? 3 : 5;
  const env = { BENCH_QUICK: quick ? '1' : '0' };
  const rows = [];

  const n = quick ? '300000' : '2000000';
  const modes = await interleaved(
    ['off', 'sampled', 'all'].map((mode) => ({
      name: mode,
      script: w('core-track.mjs'),
      args: [mode, n],
    })),
    { reps },
  );
  const targets = { off: '<= 1 us', sampled: '<= 3 us', all: '' };
  for (const m of modes) {
    rows.push({
      case: 'track+release per resource',
      config: `stacks ${m.name}`,
      value: m.median,
      unit: 'us',
      better: 'lower',
      target: targets[m.name],
    });
  }

  const bytes = await interleaved(
    [
      { name: 'no close', script: w('core-bytes.mjs'), args: ['200000'] },
      { name: 'with close', script: w('core-bytes.mjs'), args: ['200000', 'close'] },
    ],
    { reps },
  );
  for (const b of bytes) {
    rows.push({
      case: 'bytes per live resource (no stack)',
      config: b.name,
      value: b.median,
      unit: 'B',
      better: 'lower',
      target: '<= 250 B',
    });
  }

  for (const workload of ['await', 'tcp', 'timers']) {
    const results = await interleaved(
      [
        {
          name: 'baseline',
          script: w('core-async.mjs'),
          args: [workload],
          env: { ...env, TF_SOURCE: 'off' },
        },
        {
          name: 'async-hooks source',
          script: w('core-async.mjs'),
          args: [workload],
          env: { ...env, TF_SOURCE: 'on' },
        },
        {
          name: 'handles source',
          script: w('core-async.mjs'),
          args: [workload],
          env: { ...env, TF_SOURCE: 'handles' },
        },
      ],
      { reps },
    );
    const target = { await: '>= 0.95x', tcp: '>= 0.85x', timers: '' }[workload];
    const label = {
      await: '1e6 awaits',
      tcp: 'TCP connect/close churn',
      timers: 'setTimeout churn',
    }[workload];
    for (const r of results) {
      rows.push({
        case: label,
        config: r.name,
        value: r.median,
        unit: 'ops/s',
        better: 'higher',
        baseline: r.name === 'baseline',
        peakRssBytes: r.peakRssBytes,
        target: r.name === 'baseline' ? '' : target,
      });
    }
  }
  return rows;
}
