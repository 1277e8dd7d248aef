// Shared by the compare-* workloads. A workload never knows which tool is loaded: the suite picks
// the configuration by how it launches the child (--import / --require of a bench/configs module,
// the @trustflow/instrument preload, environment variables). Timing is wall clock over a fixed
// duration after a warm-up; the CPU time of the whole process (every thread) is reported beside it.
import { report } from '../lib.mjs';

const quick = process.env.BENCH_QUICK === '1';

/** Measuring time in ms (env BENCH_MS), shorter in quick mode. */
export const measureMs = Number(process.env.BENCH_MS ?? (quick ? 250 : 1500));
export const warmupMs = Number(process.env.BENCH_WARMUP_MS ?? (quick ? 150 : 500));

/**
 * Runs `op` in `concurrency` loops for `ms` and returns { ops, seconds, cpuSeconds }. `op` may
 * return a number of units done (default 1).
 */
export async function loops(op, { ms, concurrency = 1 }) {
  let ops = 0;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const until = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        // read the result first: `ops += await op()` would read `ops` before the await and lose
        // the other loops' updates
        const done = (await op()) ?? 1;
        ops += done;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return { ops, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/**
 * Warm-up, then measure; returns the result for `finish()` (value = units per second).
 * Steady state for every tool: the OTel configuration sets its SDK up before the application
 * starts (--import), our preload loads its SDK in the first event-loop turn (deferred, so a short
 * program never pays for it); we wait for it (`ready` of the running instrumentation) so the
 * measurement does not include loading it. Startup is not what these workloads measure.
 */
export async function bench(op, { concurrency = 1, unit = 'ops/s' } = {}) {
  await globalThis[Symbol.for('@trustflow/instrument')]?.ready;
  await loops(op, { ms: warmupMs, concurrency });
  const { ops, seconds, cpuSeconds } = await loops(op, { ms: measureMs, concurrency });
  return {
    value: ops / seconds,
    unit,
    ops,
    cpuUsPerOp: (cpuSeconds * 1e6) / ops,
  };
}

/**
 * Prints the result and ends the process: some tools keep it alive after the work is done (the
 * OTel SDK's Prometheus server and batch timer), and their shutdown is not what is measured.
 */
export async function finish(result) {
  // evidence that a tool did its work: spans the OTel configuration exported
  const otel = globalThis[Symbol.for('trustflow.bench.otel')];
  if (otel) {
    await otel.tracerProvider.forceFlush();
    result.spans = otel.spans();
  }
  report(result);
  process.exit(0);
}
