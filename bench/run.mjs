// pnpm bench [--quick] [suite ...]: runs every suite in bench/suites (or the named ones), prints a
// table with ratios against the baseline measured in the same run, and writes
// bench/results/latest.json and the results section of docs/benchmarks.md.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { root } from './lib.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const only = argv.filter((a) => !a.startsWith('--'));
const suiteDir = join(root, 'bench', 'suites');
const files = readdirSync(suiteDir)
  .filter((f) => f.endsWith('.mjs'))
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.mjs$/, '')))
  .sort();

const rows = [];
const failures = [];
for (const file of files) {
  const suite = await import(join(suiteDir, file));
  const name = file.replace(/\.mjs$/, '');
  process.stderr.write(`bench: ${name} (${suite.title ?? ''})\n`);
  const started = performance.now();
  try {
    const result = await suite.run({ quick });
    for (const row of result) rows.push({ suite: name, ...row });
  } catch (error) {
    failures.push(`${name}: ${error.message}`);
    process.stderr.write(`bench: ${name} failed: ${error.stack}\n`);
  }
  process.stderr.write(
    `bench: ${name} took ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
}

for (const row of rows) {
  const base = rows.find((r) => r.suite === row.suite && r.case === row.case && r.baseline);
  if (!base || base === row || !base.value || !row.value) continue;
  row.ratio = row.better === 'lower' ? base.value / row.value : row.value / base.value;
}

const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3));
const header = '| suite | case | config | median | ratio | peak RSS | target |';
const lines = [header, '|---|---|---|---|---|---|---|'];
for (const r of rows) {
  lines.push(
    `| ${r.suite} | ${r.case} | ${r.config} | ${fmt(r.value)} ${r.unit} | ${r.ratio ? `${r.ratio.toFixed(3)}x` : r.baseline ? 'baseline' : ''} | ${r.peakRssBytes ? `${(r.peakRssBytes / 1048576).toFixed(0)} MB` : ''} | ${r.target ?? ''} |`,
  );
}
const table = lines.join('\n');
process.stdout.write(`\n${table}\n`);
if (failures.length) process.stdout.write(`\nfailed suites:\n- ${failures.join('\n- ')}\n`);

const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`;
const date = new Date().toISOString().slice(0, 10);
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(
  join(root, 'bench', 'results', 'latest.json'),
  `${JSON.stringify({ date, machine, quick, rows: rows.map((r) => ({ workload: `${r.suite}: ${r.case}`, config: r.config, median: r.value, unit: r.unit, ratio: r.ratio ?? (r.baseline ? 1 : null), peakRssBytes: r.peakRssBytes ?? null })) }, null, 2)}\n`,
);
if (only.length === 0) {
  const docPath = join(root, 'docs', 'benchmarks.md');
  let doc = '';
  try {
    doc = readFileSync(docPath, 'utf8');
  } catch {}
  const section = `<!-- results:start -->\nMeasured with \`pnpm bench${quick ? ' --quick' : ''}\` on ${date}: ${machine}.\n\n${table}\n<!-- results:end -->`;
  doc = /<!-- results:start -->[\s\S]*<!-- results:end -->/.test(doc)
    ? doc.replace(/<!-- results:start -->[\s\S]*<!-- results:end -->/, section)
    : `${doc}\n${section}\n`;
  writeFileSync(docPath, doc);
}
process.exitCode = failures.length ? 1 : 0;
