import { join } from 'node:path';
import { interleaved, root } from '../lib.mjs';

export const title = '@trustflow/leak-test: cost of the per-test leak check';

const w = (name) => join(root, 'bench', 'workloads', name);

export async function run({ quick }) {
  const reps = quick ? 3 : 5;
  const env = { BENCH_QUICK: quick ? '1' : '0' };
  const rows = [];

  const cases = {
    empty: 'empty test body, expectNoLeaks',
    socket: 'test opening and destroying a socket, expectNoLeaks',
    busy: 'empty test body, 1000 resources already open, expectNoLeaks',
  };
  for (const [workload, label] of Object.entries(cases)) {
    const results = await interleaved(
      ['off', 'on'].map((mode) => ({
        name: mode,
        script: w('leak-test-check.mjs'),
        args: [workload],
        env: { ...env, LT_CHECK: mode },
      })),
      { reps },
    );
    for (const r of results) {
      rows.push({
        case: label,
        config: r.name === 'on' ? 'checked' : 'unchecked',
        value: r.median,
        unit: 'ms/test',
        better: 'lower',
        baseline: r.name === 'off',
        target: r.name === 'on' ? '< 50 ms/test' : '',
        peakRssBytes: r.peakRssBytes,
      });
    }
  }

  // A real vitest run of 200 tests (100 synchronous, 100 opening a socket), with and without the
  // setup file; the time per test includes vitest's own start-up, spread over the 200 tests.
  const vitest = await interleaved(
    ['off', 'on'].map((mode) => ({
      name: mode,
      script: w('leak-test-vitest.mjs'),
      env: { LT_CHECK: mode },
    })),
    { reps },
  );
  for (const r of vitest) {
    rows.push({
      case: 'vitest run of 200 tests, wall time per test',
      config: r.name === 'on' ? 'setupFiles: @trustflow/leak-test/vitest' : 'no setup file',
      value: r.median,
      unit: 'ms/test',
      better: 'lower',
      baseline: r.name === 'off',
      target: r.name === 'on' ? '< 50 ms/test' : '',
      peakRssBytes: r.peakRssBytes,
    });
  }
  return rows;
}
