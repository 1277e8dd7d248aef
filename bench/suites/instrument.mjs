// The preload with its defaults (Prometheus endpoint on, plugins and the handles source where they
// apply, SDK loaded after start) against plain node, on the loads a service sees: an HTTP
// keep-alive server under load, TCP churn, fs churn and an await loop; and start-to-exit of a
// program that does nothing. Each configuration in its own process, interleaved.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeRatios, freePort, interleaved, median, repetitions, root } from '../lib.mjs';

export const title = '@trustflow/instrument preload (defaults) against plain node';

const w = (name) => join(root, 'bench', 'workloads', name);
const PRELOAD = fileURLToPath(
  new URL('../../packages/instrument/dist/register.js', import.meta.url),
);

export async function run({ quick }) {
  // 7 runs in full mode (BENCH_REPS for more): the churn loops move by a few percent between
  // runs, as much as the targets' margins
  const reps = repetitions(quick, 3, 7);
  const rows = [];
  const plain = { name: 'plain node', env: { BENCH_QUICK: quick ? '1' : '0' } };
  const preload = {
    name: 'preload (defaults)',
    nodeArgs: ['--import', PRELOAD],
    // defaults, except a free port for the endpoint (several runs, maybe other services on 9464)
    env: async () => ({
      BENCH_QUICK: quick ? '1' : '0',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(await freePort()),
    }),
  };

  const cases = [
    {
      label: 'HTTP keep-alive server under load',
      script: 'instrument-http.mjs',
      args: [],
      unit: 'req/s',
      target: '>= 0.95x',
    },
    {
      label: 'TCP connect/close churn',
      script: 'instrument-churn.mjs',
      args: ['tcp'],
      unit: 'ops/s',
      target: '>= 0.9x',
    },
    {
      label: 'fs open/read/close churn',
      script: 'instrument-churn.mjs',
      args: ['fs'],
      unit: 'ops/s',
      target: '>= 0.9x',
    },
    {
      label: 'await loop',
      script: 'instrument-churn.mjs',
      args: ['await'],
      unit: 'awaits/s',
      target: '>= 0.9x',
    },
  ];
  // Full runs add the preload without plugins: what the preload itself (SDK, endpoint) costs,
  // apart from the trackers of the plugins.
  const bare = {
    name: 'preload, TRUSTFLOW_PLUGINS=none',
    nodeArgs: ['--import', PRELOAD],
    env: async () => ({ ...(await preload.env()), TRUSTFLOW_PLUGINS: 'none' }),
  };
  for (const c of cases) {
    const configs = (quick ? [plain, preload] : [plain, preload, bare]).map((config) => ({
      ...config,
      script: w(c.script),
      args: c.args,
    }));
    // one set of runs, two figures: throughput (wall), and per CPU second of the measured process,
    // which a machine shared with other work disturbs much less
    const results = await interleaved(configs, { reps, pick: (r) => r.value });
    for (const [suffix, unit, pick] of [
      ['', c.unit, (r) => r.value],
      [' (per CPU-second)', `${c.unit.split('/')[0]}/CPU-s`, (r) => r.cpu],
    ]) {
      const base = results.find((r) => r.name === plain.name);
      for (const r of results) {
        // the ratios of the runs taken side by side (run i of each configuration)
        const ratios = r.results.map((result, i) => pick(result) / pick(base.results[i]));
        const spread = r === base ? '' : describeRatios(ratios);
        rows.push({
          case: `${c.label}${suffix}`,
          config: r.name,
          value: median(r.results.map(pick)),
          unit,
          better: 'higher',
          baseline: r === base,
          peakRssBytes: r.peakRssBytes,
          target: r.name === preload.name ? `${c.target}; ${spread}` : spread,
        });
      }
    }
  }

  const startup = await interleaved(
    [
      { name: 'plain node', args: [] },
      { name: 'preload (defaults)', args: ['--import', PRELOAD] },
      {
        name: 'preload, TRUSTFLOW_DISABLED=1',
        args: ['--import', PRELOAD],
        env: { TRUSTFLOW_DISABLED: '1' },
      },
      // what a program that makes any resource pays once (the preload starts at its first one)
      {
        name: 'preload started at once (TRUSTFLOW_REPORT=signal)',
        args: ['--import', PRELOAD],
        env: { TRUSTFLOW_REPORT: 'signal' },
      },
    ].map((c) => ({
      ...c,
      script: w('instrument-startup.mjs'),
      env: { BENCH_QUICK: quick ? '1' : '0', OTEL_EXPORTER_PROMETHEUS_PORT: '0', ...c.env },
    })),
    { reps: quick ? 2 : 3 },
  );
  for (const r of startup) {
    rows.push({
      case: 'start to exit, a program that does nothing',
      config: r.name,
      value: r.median,
      unit: 'ms',
      better: 'lower',
      baseline: r.name === 'plain node',
      target: '',
    });
  }
  return rows;
}
