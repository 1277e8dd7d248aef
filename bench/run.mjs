// pnpm bench [--quick] [suite ...]: runs every suite in bench/suites (or the named ones), prints a
// table with ratios against the baseline measured in the same run, and writes
// bench/results/latest.json and the results section of docs/benchmarks.md.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { budgetCuts, root } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const only = argv.filter((a) => !a.startsWith('--'));
// --quick should finish all suites in about three minutes on two cores. Each suite has a budget
// (seconds); past it, interleaved() stops after two repetitions instead of the suite's own count
// (the cut is printed and written beside the results). Full runs have no budget.
const QUICK_BUDGETS = {
  compare: 75,
  detection: 30,
  core: 20,
  instrument: 35,
  'trustflow-node': 12,
  'fs-net': 10,
  libp2p: 10,
  'buffer-pool': 10,
  'leak-test': 10,
};
const QUICK_BUDGET_S = 10;
const suiteDir = join(root, 'bench', 'suites');
const FIRST = ['compare.mjs', 'detection.mjs'];
const rank = (file) => (FIRST.includes(file) ? FIRST.indexOf(file) : FIRST.length);
const files = readdirSync(suiteDir)
  .filter((f) => f.endsWith('.mjs'))
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.mjs$/, '')))
  // the side-by-side comparison and the detection matrix first, then the per-package suites
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

/**
 * CPU seconds used so far by this process and every child it waited for (Linux /proc; null
 * elsewhere). On a machine shared with other work, this is the figure that says how long the run
 * would take alone: the children run one at a time and are mostly single-threaded.
 */
function cpuSecondsWithChildren() {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    // fields after the command name start at field 3: utime 14, stime 15, cutime 16, cstime 17
    return [11, 12, 13, 14].reduce((t, i) => t + Number(fields[i]), 0) / ticks;
  } catch {
    return null;
  }
}

const rows = [];
const failures = [];
const suites = [];
for (const file of files) {
  const suite = await import(join(suiteDir, file));
  const name = file.replace(/\.mjs$/, '');
  process.stderr.write(`bench: ${name} (${suite.title ?? ''})\n`);
  const started = performance.now();
  const cpuStarted = cpuSecondsWithChildren();
  const budget = quick ? (QUICK_BUDGETS[name] ?? QUICK_BUDGET_S) : undefined;
  if (budget) process.env.BENCH_DEADLINE = String(Date.now() + budget * 1000);
  const cutsBefore = budgetCuts.length;
  const entry = { name, title: suite.title ?? '', rows: [], markdown: undefined, json: {} };
  try {
    // a suite returns its rows, or { rows, markdown?, json? }: markdown (a string, or a function
    // of every row once ratios are known) replaces the generic table of that suite in the output,
    // json is merged into bench/results/latest.json
    const result = await suite.run({ quick });
    const out = Array.isArray(result) ? { rows: result } : result;
    for (const row of out.rows ?? []) {
      const full = { suite: name, ...row };
      rows.push(full);
      entry.rows.push(full);
    }
    entry.markdown = out.markdown;
    entry.json = out.json ?? {};
  } catch (error) {
    failures.push(`${name}: ${error.message}`);
    process.stderr.write(`bench: ${name} failed: ${error.stack}\n`);
  }
  delete process.env.BENCH_DEADLINE;
  entry.seconds = (performance.now() - started) / 1000;
  const cpuNow = cpuSecondsWithChildren();
  entry.cpuSeconds = cpuNow !== null && cpuStarted !== null ? cpuNow - cpuStarted : null;
  entry.budget = budget;
  entry.cuts = budgetCuts.slice(cutsBefore);
  suites.push(entry);
  process.stderr.write(
    `bench: ${name} took ${entry.seconds.toFixed(1)} s${entry.cpuSeconds !== null ? ` (${entry.cpuSeconds.toFixed(1)} CPU s)` : ''}\n`,
  );
  if (budget && entry.seconds > budget) {
    process.stderr.write(
      `bench: ${name} is over its quick budget (${entry.seconds.toFixed(0)} s > ${budget} s)\n`,
    );
  }
  if (entry.cuts.length) {
    process.stderr.write(
      `bench: ${name}: ${entry.cuts.length} measurement(s) cut to 2 repetitions by the quick budget\n`,
    );
  }
}

for (const row of rows) {
  const base = rows.find((r) => r.suite === row.suite && r.case === row.case && r.baseline);
  if (!base || base === row || !base.value || !row.value) continue;
  row.ratio = row.better === 'lower' ? base.value / row.value : row.value / base.value;
}

const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3));
function genericTable(list) {
  const lines = [
    '| case | config | median | ratio | peak RSS | target |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of list) {
    lines.push(
      `| ${r.case} | ${r.config} | ${fmt(r.value)} ${r.unit} | ${r.ratio ? `${r.ratio.toFixed(3)}x` : r.baseline ? 'baseline' : ''} | ${r.peakRssBytes ? `${(r.peakRssBytes / 1048576).toFixed(0)} MB` : ''} | ${r.target ?? ''} |`,
    );
  }
  return lines.join('\n');
}
const sections = [];
for (const s of suites) {
  let body;
  if (typeof s.markdown === 'function') body = s.markdown(s.rows);
  else if (typeof s.markdown === 'string') body = s.markdown;
  else body = s.rows.length ? genericTable(s.rows) : '(no rows: the suite failed)';
  const cut = s.cuts.length
    ? `\n\n_Quick budget (${s.budget} s) reached: ${s.cuts.length} measurement(s) ran 2 repetitions instead of ${s.cuts[0].wanted} (median of 2 = their mean)._`
    : '';
  sections.push(`### ${s.name}: ${s.title} (${s.seconds.toFixed(0)} s)\n\n${body.trim()}${cut}\n`);
}
const table = sections.join('\n');
process.stdout.write(`\n${table}\n`);
if (failures.length) process.stdout.write(`\nfailed suites:\n- ${failures.join('\n- ')}\n`);

const total = suites.reduce((t, s) => t + s.seconds, 0);
const totalCpu = suites.every((s) => s.cpuSeconds !== null)
  ? suites.reduce((t, s) => t + s.cpuSeconds, 0)
  : null;
let load = '';
try {
  load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
} catch {}
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`;
const date = new Date().toISOString().slice(0, 10);
const command = `pnpm bench${quick ? ' --quick' : ''}${only.length ? ` ${only.join(' ')}` : ''}`;
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const json = {
  date,
  machine,
  node: process.version,
  command,
  quick,
  seconds: Math.round(total),
  cpuSeconds: totalCpu === null ? null : Math.round(totalCpu),
  loadAverage: load || null,
  suites: Object.fromEntries(
    suites.map((s) => [
      s.name,
      {
        seconds: Math.round(s.seconds),
        cpuSeconds: s.cpuSeconds === null ? null : Math.round(s.cpuSeconds),
        budget: s.budget ?? null,
        cutMeasurements: s.cuts.length,
      },
    ]),
  ),
  rows: rows.map(
    ({
      suite,
      case: c,
      config,
      value,
      unit,
      ratio,
      peakRssBytes,
      baseline,
      better,
      target,
      ...extra
    }) => ({
      workload: `${suite}: ${c}`,
      config,
      median: value,
      unit,
      ratio: ratio ?? (baseline ? 1 : null),
      peakRssBytes: peakRssBytes ?? null,
      ...extra,
    }),
  ),
};
for (const s of suites) Object.assign(json, s.json);
writeFileSync(join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
if (only.length === 0) {
  const docPath = join(root, 'docs', 'benchmarks.md');
  let doc = '';
  try {
    doc = readFileSync(docPath, 'utf8');
  } catch {}
  const section = `<!-- results:start -->\nMeasured with \`${command}\` on ${date}: ${machine}. All suites took ${total.toFixed(0)} s${totalCpu !== null ? ` wall clock and ${totalCpu.toFixed(0)} s of CPU (every benchmark process; load average at the end ${load})` : ''}.\n\n${table}\n<!-- results:end -->`;
  doc = /<!-- results:start -->[\s\S]*<!-- results:end -->/.test(doc)
    ? doc.replace(/<!-- results:start -->[\s\S]*<!-- results:end -->/, () => section)
    : `${doc}\n${section}\n`;
  writeFileSync(docPath, doc);
}
process.exitCode = failures.length ? 1 : 0;
