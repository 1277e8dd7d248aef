// Side by side: the same workloads under the tools a user would pick instead of ours, each
// configuration in its own process, interleaved, several repetitions, medians, ratios to the
// baseline of the same run, peak RSS. The workloads (bench/workloads/compare-*.mjs) do not know
// which tool is loaded: the configuration is how the child is launched (see CONFIGS).
import { join } from 'node:path';
import { freePort, interleaved, median, root } from '../lib.mjs';

export const title =
  'side by side: our preload against why-is-node-running, wtfnode, OpenTelemetry and libp2p metrics';

const bench = join(root, 'bench');
const config = (file) => join(bench, 'configs', file);
const promPort = async () => String(await freePort());

/**
 * Every configuration runs with cwd bench/ (so `--import @trustflow/instrument` resolves as it
 * does for an application that depends on it). `comparable` names what the configuration does
 * that ours also does, for the note under the table.
 */
const CONFIGS = {
  baseline: { label: 'baseline (plain node)' },
  trustflow: {
    label: '@trustflow/instrument defaults',
    nodeArgs: ['--import', '@trustflow/instrument'],
    // the default exporter (Prometheus endpoint on loopback), on a free port: nothing scrapes
    env: async () => ({ OTEL_EXPORTER_PROMETHEUS_PORT: await promPort() }),
  },
  'trustflow-all': {
    label: '@trustflow/instrument, TRUSTFLOW_STACKS=all',
    nodeArgs: ['--import', '@trustflow/instrument'],
    env: async () => ({
      OTEL_EXPORTER_PROMETHEUS_PORT: await promPort(),
      TRUSTFLOW_STACKS: 'all',
    }),
  },
  why: {
    label: 'why-is-node-running loaded',
    nodeArgs: ['--import', config('why-is-node-running.mjs')],
  },
  wtfnode: { label: 'wtfnode loaded', nodeArgs: ['--require', config('wtfnode.cjs')] },
  otel: {
    label: 'OTel SDK + instrumentation-fs/-net',
    nodeArgs: ['--import', config('otel.mjs')],
    env: async () => ({ BENCH_PROM_PORT: await promPort() }),
  },
  'libp2p-prometheus': {
    label: '@libp2p/prometheus-metrics',
    nodeArgs: ['--import', config('libp2p-prometheus.mjs')],
  },
  'libp2p-trustflow': {
    label: 'libp2pMetrics() (@trustflow/plugin-libp2p)',
    nodeArgs: ['--import', config('libp2p-trustflow.mjs')],
    env: async () => ({ BENCH_PROM_PORT: await promPort() }),
  },
};

const GENERAL = ['baseline', 'trustflow', 'trustflow-all', 'why', 'wtfnode', 'otel'];

export const WORKLOADS = [
  { id: 'tcp', label: 'TCP connect/close churn', configs: GENERAL },
  { id: 'http', label: 'HTTP keep-alive load', configs: GENERAL },
  { id: 'fs', label: 'fs open/read/close churn', configs: GENERAL },
  { id: 'await', label: 'await-heavy loop', configs: GENERAL },
  {
    id: 'libp2p',
    label: 'libp2p stream open/echo/close',
    configs: [...GENERAL, 'libp2p-prometheus', 'libp2p-trustflow'],
  },
  { id: 'buffers', label: 'buffer-heavy chunk processing', configs: GENERAL },
];

export async function run({ quick }) {
  const reps = quick ? 3 : 5;
  const only = process.env.BENCH_COMPARE_ONLY?.split(',');
  const rows = [];
  for (const workload of WORKLOADS) {
    if (only && !only.includes(workload.id)) continue;
    const results = await interleaved(
      workload.configs.map((name) => ({
        name,
        script: join(bench, 'workloads', `compare-${workload.id}.mjs`),
        cwd: bench,
        nodeArgs: CONFIGS[name].nodeArgs ?? [],
        env: async () => ({
          BENCH_QUICK: quick ? '1' : '0',
          ...(typeof CONFIGS[name].env === 'function' ? await CONFIGS[name].env() : {}),
        }),
      })),
      { reps },
    );
    for (const r of results) {
      rows.push({
        case: workload.label,
        config: CONFIGS[r.name].label,
        value: r.median,
        unit: r.last?.unit ?? 'ops/s',
        better: 'higher',
        baseline: r.name === 'baseline',
        peakRssBytes: r.peakRssBytes,
        cpuUsPerOp: median(r.results.map((x) => x.cpuUsPerOp)),
        workloadId: workload.id,
        configId: r.name,
      });
    }
  }
  return { rows, markdown: (all) => markdown(all) };
}

const fmt = (v) =>
  v >= 1e6
    ? `${(v / 1e6).toFixed(2)} M`
    : v >= 1e4
      ? `${(v / 1e3).toFixed(1)} k`
      : v >= 100
        ? v.toFixed(0)
        : v.toFixed(1);

/** One table per workload: configurations as rows. `all` are the rows with ratios filled in. */
function markdown(all) {
  const out = [];
  for (const workload of WORKLOADS) {
    const rows = all.filter((r) => r.workloadId === workload.id);
    if (rows.length === 0) continue;
    const base = rows.find((r) => r.baseline);
    out.push(`**${workload.label}** (${rows[0].unit}, higher is better)\n`);
    out.push('| configuration | median | ratio | CPU per op | CPU ratio | peak RSS |');
    out.push('|---|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      const cpuRatio = base?.cpuUsPerOp && r.cpuUsPerOp ? base.cpuUsPerOp / r.cpuUsPerOp : null;
      out.push(
        `| ${r.config} | ${fmt(r.value)} | ${r.baseline ? 'baseline' : r.ratio ? `${r.ratio.toFixed(2)}x` : ''} | ${r.cpuUsPerOp ? `${r.cpuUsPerOp < 1 ? r.cpuUsPerOp.toFixed(3) : r.cpuUsPerOp.toFixed(1)} µs` : ''} | ${r.baseline ? '' : cpuRatio ? `${cpuRatio.toFixed(2)}x` : ''} | ${(r.peakRssBytes / 1048576).toFixed(0)} MB |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}
