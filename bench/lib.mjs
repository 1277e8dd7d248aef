// Shared helpers for benchmark suites. A suite is bench/suites/<name>.mjs exporting
//   export const title = '...';
//   export async function run({ quick }) { return rows; }
// where each row is { case, config, value, unit, better: 'higher' | 'lower', baseline?: true,
// target?: string, peakRssBytes?: number }. The runner computes ratios against the row of the
// same case marked baseline: ratio > 1 always means "better than baseline".
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom
const T95 = [
  12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145,
  2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048,
  2.045, 2.042,
];

/**
 * The ratio of two configurations from runs taken side by side (`ratios[i]` = run i of one over
 * run i of the other): their geometric mean and its 95 % confidence interval (Student's t on the
 * logarithms). The interval says how far the machine's noise leaves the figure open; with fewer
 * than two ratios it is the single ratio.
 */
function pairedRatio(ratios) {
  const logs = ratios.map(Math.log);
  const n = logs.length;
  const mean = logs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { ratio: Math.exp(mean), low: Math.exp(mean), high: Math.exp(mean) };
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  const half = (T95[n - 2] ?? (n - 1 <= 60 ? 2.0 : 1.98)) * (sd / Math.sqrt(n));
  return { ratio: Math.exp(mean), low: Math.exp(mean - half), high: Math.exp(mean + half) };
}

/** `paired 0.970x (95% CI 0.942-0.999; runs 0.85-1.10)` for the ratios of runs taken side by side. */
export function describeRatios(ratios) {
  const { ratio, low, high } = pairedRatio(ratios);
  const range = `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`;
  return `paired ${ratio.toFixed(3)}x (95% CI ${low.toFixed(3)}-${high.toFixed(3)}; runs ${range})`;
}

/**
 * Repetitions of a full run: `full`, or BENCH_REPS when it is set (more runs narrow the
 * confidence intervals on a noisy machine). Quick runs keep `quick`.
 */
export function repetitions(quick, quickReps, full) {
  if (quick) return quickReps;
  const raw = process.env.BENCH_REPS;
  if (raw === undefined || raw === '') return full;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 2 || n > 1000) {
    throw new Error(`BENCH_REPS=${JSON.stringify(raw)} is not a whole number from 2 to 1000`);
  }
  return n;
}

/**
 * Runs `node [...nodeArgs] script` once and resolves with the JSON object the script printed as its
 * last stdout line, plus the child's peak RSS (from /usr/bin/time-free getrusage of the child).
 */
export function runChild(
  script,
  { nodeArgs = [], env = {}, args = [], timeoutMs = 300_000, cwd } = {},
) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(cwd ? { cwd } : {}),
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) {
        reject(
          new Error(
            `${script} exited with ${code ?? signal}: ${err.trim().split('\n').slice(-5).join(' | ')}`,
          ),
        );
        return;
      }
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`${script} printed no JSON result: ${last.slice(0, 200)}`));
      }
    });
  });
}

/**
 * Runs each configuration `reps` times, interleaved and rotated (A B C, B C A, C A B, ...: every
 * configuration takes every place in a round equally often, so that whatever favours the first
 * or last run of a round favours none of them), each run in its own process,
 * and returns per configuration the median of `pick(result)` and the highest peak RSS seen (and
 * every result, in `results`). A configuration is { name, script, nodeArgs?, env?, args?, cwd? };
 * `env` may be an async function returning the environment, called before every run (for a fresh
 * free port, say).
 */
export async function interleaved(configs, { reps = 5, pick = (r) => r.value } = {}) {
  const samples = new Map(
    configs.map((c) => [c.name, { values: [], rss: 0, last: undefined, results: [] }]),
  );
  const deadline = Number(process.env.BENCH_DEADLINE ?? Number.POSITIVE_INFINITY);
  for (let i = 0; i < reps; i++) {
    // the runner's quick budget: past the suite's deadline, stop after two repetitions
    if (i >= 2 && Date.now() > deadline) {
      budgetCuts.push({ configs: configs.map((c) => c.name), reps: i, wanted: reps });
      break;
    }
    for (let k = 0; k < configs.length; k++) {
      const config = configs[(i + k) % configs.length];
      const env = typeof config.env === 'function' ? await config.env() : config.env;
      const result = await runChild(config.script, { ...config, env });
      const s = samples.get(config.name);
      s.values.push(pick(result));
      s.rss = Math.max(s.rss, result.peakRssBytes ?? 0);
      s.last = result;
      s.results.push(result);
    }
  }
  return configs.map((c) => {
    const s = samples.get(c.name);
    return {
      name: c.name,
      median: median(s.values),
      values: s.values,
      peakRssBytes: s.rss,
      last: s.last,
      results: s.results,
    };
  });
}

/** Repetitions skipped because a suite ran past its quick budget (read by the runner). */
export const budgetCuts = [];

/** A TCP port on 127.0.0.1 that was free a moment ago (for a child's metrics endpoint). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** For child scripts: prints the result line the runner reads, with this process's peak RSS. */
export function report(result) {
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ ...result, peakRssBytes })}\n`);
}

/** Runs `fn` repeatedly for about `ms` milliseconds after a warm-up; returns operations per second. */
export async function opsPerSecond(fn, { ms = 1000, warmupMs = 200, batch = 1 } = {}) {
  const until = (deadline) => performance.now() < deadline;
  let deadline = performance.now() + warmupMs;
  while (until(deadline)) await fn();
  let ops = 0;
  const start = performance.now();
  deadline = start + ms;
  while (until(deadline)) {
    await fn();
    ops += batch;
  }
  return (ops * 1000) / (performance.now() - start);
}
