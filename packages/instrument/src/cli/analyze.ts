import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { estimateGrowth, type GrowthEstimate } from '@trustflow/core';

/**
 * `trustflow analyze <csv...>`: growth per hour of every numeric column of a monitor CSV (robust
 * slope, confidence and verdict from core's `estimateGrowth`), the spread of the fd count, and
 * optionally a self-contained HTML report with one inline SVG chart per series.
 */

const USAGE = `Usage: trustflow analyze <csv...> [--html report.html] [--json]

Reads CSV files written by trustflow monitor (rotated files too: pass them oldest first, e.g.
monitor.csv.2 monitor.csv.1 monitor.csv) and prints, for every numeric column, its growth per
hour with a confidence and a verdict, and the spread of the file descriptor count.

Options:
  --html FILE        also write a self-contained HTML report with charts (no network needed)
  --json             print JSON instead of text
  --min-confidence X confidence needed to call growth (default 0.95)
  -h, --help         this help
`;

const SKIP = new Set(['timestamp', 'pid', 'error']);

class UsageError extends Error {}

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
    } else if (c === '"' && field === '') {
      quoted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else {
      field += c;
    }
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

export interface SeriesAnalysis {
  name: string;
  unit: string;
  points: { t: number; v: number }[];
  first: number;
  last: number;
  min: number;
  max: number;
  mean: number;
  growth: GrowthEstimate;
  /** A line through the data with the estimated slope (for charts): v = intercept + slope * hours. */
  intercept: number;
}

export interface Analysis {
  files: string[];
  rows: number;
  rowsWithErrors: number;
  firstAt: string | null;
  lastAt: string | null;
  spanHours: number;
  series: SeriesAnalysis[];
  fds: { mean: number; variance: number; stddev: number; min: number; max: number } | null;
  warnings: string[];
}

function unitOf(name: string): string {
  if (name.endsWith('_mb')) return 'MB';
  if (name.endsWith('_percent')) return '%';
  return '';
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Analyses CSV texts (one per file, in time order). */
export function analyzeCsv(
  inputs: { name: string; text: string }[],
  options: { minConfidence?: number } = {},
): Analysis {
  const warnings: string[] = [];
  let header: string[] | undefined;
  const records: Record<string, string>[] = [];
  for (const { name, text } of inputs) {
    const lines = parseCsv(text).filter((r) => !(r.length === 1 && r[0] === ''));
    if (lines.length === 0) {
      warnings.push(`${name}: empty`);
      continue;
    }
    const fileHeader = lines[0]!;
    if (!fileHeader.includes('timestamp')) {
      throw new Error(`${name}: the first line is not a header with a timestamp column`);
    }
    if (header && header.join(',') !== fileHeader.join(',')) {
      throw new Error(`${name}: its columns differ from the first file's`);
    }
    header = fileHeader;
    for (let i = 1; i < lines.length; i++) {
      const cells = lines[i]!;
      if (cells.length !== fileHeader.length) {
        warnings.push(
          `${name} line ${i + 1}: ${cells.length} fields, expected ${fileHeader.length}; skipped`,
        );
        continue;
      }
      records.push(Object.fromEntries(fileHeader.map((h, k) => [h, cells[k]!])));
    }
  }
  const columns = (header ?? []).filter((c) => !SKIP.has(c));
  const times = records.map((r) => Date.parse(r.timestamp ?? ''));
  const bad = times.filter((t) => !Number.isFinite(t)).length;
  if (bad > 0) warnings.push(`${bad} rows with an unreadable timestamp were skipped`);
  const valid = records
    .map((r, i) => ({ r, t: times[i]! }))
    .filter((x) => Number.isFinite(x.t))
    .sort((a, b) => a.t - b.t);
  const series: SeriesAnalysis[] = [];
  for (const name of columns) {
    const points: { t: number; v: number }[] = [];
    for (const { r, t } of valid) {
      const cell = r[name];
      if (cell === undefined || cell === '') continue;
      const v = Number(cell);
      if (Number.isFinite(v)) points.push({ t, v });
    }
    if (points.length === 0) continue;
    const values = points.map((p) => p.v);
    const growth = estimateGrowth(points, {
      minConfidence: options.minConfidence ?? 0.95,
      minPoints: 12,
    });
    const t0 = points[0]!.t;
    const intercept = median(
      points.map((p) => p.v - (growth.slopePerHour * (p.t - t0)) / 3_600_000),
    );
    series.push({
      name,
      unit: unitOf(name),
      points,
      first: values[0]!,
      last: values[values.length - 1]!,
      min: Math.min(...values),
      max: Math.max(...values),
      mean: values.reduce((a, b) => a + b, 0) / values.length,
      growth,
      intercept,
    });
  }
  const fdSeries = series.find((s) => s.name === 'file_descriptors');
  let fds: Analysis['fds'] = null;
  if (fdSeries) {
    const values = fdSeries.points.map((p) => p.v);
    const mean = fdSeries.mean;
    const variance =
      values.length > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1) : 0;
    fds = { mean, variance, stddev: Math.sqrt(variance), min: fdSeries.min, max: fdSeries.max };
  }
  const firstAt = valid[0]?.t;
  const lastAt = valid[valid.length - 1]?.t;
  return {
    files: inputs.map((i) => i.name),
    rows: valid.length,
    rowsWithErrors: valid.filter(({ r }) => (r.error ?? '') !== '').length,
    firstAt: firstAt === undefined ? null : new Date(firstAt).toISOString(),
    lastAt: lastAt === undefined ? null : new Date(lastAt).toISOString(),
    spanHours: firstAt === undefined ? 0 : (lastAt! - firstAt) / 3_600_000,
    series,
    fds,
    warnings,
  };
}

function num(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 0.01 || a >= 1e6)) return x.toExponential(2);
  return x.toFixed(digits);
}

function perHour(s: SeriesAnalysis): string {
  const sign = s.growth.slopePerHour > 0 ? '+' : '';
  return `${sign}${num(s.growth.slopePerHour)} ${s.unit ? `${s.unit}/h` : '/h'}`;
}

function verdictText(s: SeriesAnalysis): string {
  switch (s.growth.verdict) {
    case 'growing':
      return 'GROWING';
    case 'stable':
      return 'stable';
    default:
      return 'too little data';
  }
}

export function formatAnalysis(a: Analysis): string {
  const out: string[] = [];
  out.push(
    `${a.rows} rows from ${a.files.join(', ')}; ${a.firstAt ?? '-'} to ${a.lastAt ?? '-'} (${num(a.spanHours)} h); ${a.rowsWithErrors} rows with errors`,
  );
  for (const w of a.warnings) out.push(`warning: ${w}`);
  out.push('');
  const table = [['series', 'first', 'last', 'min', 'max', 'growth', 'confidence', 'verdict']];
  for (const s of a.series) {
    table.push([
      s.name,
      num(s.first),
      num(s.last),
      num(s.min),
      num(s.max),
      perHour(s),
      s.growth.confidence.toFixed(3),
      verdictText(s),
    ]);
  }
  const widths = table[0]!.map((_, k) => Math.max(...table.map((r) => r[k]!.length)));
  for (const r of table)
    out.push(
      r
        .map((c, k) => c.padEnd(widths[k]!))
        .join('  ')
        .trimEnd(),
    );
  if (a.fds) {
    out.push('');
    out.push(
      `file descriptors: mean ${num(a.fds.mean)}, variance ${num(a.fds.variance)}, stddev ${num(a.fds.stddev)}, range ${a.fds.min}-${a.fds.max}`,
    );
  }
  const growing = a.series.filter((s) => s.growth.verdict === 'growing');
  out.push('');
  if (growing.length === 0) {
    out.push('verdict: no sustained growth');
  } else {
    for (const s of growing) out.push(`verdict: ${s.name} ${s.growth.reason}`);
  }
  return `${out.join('\n')}\n`;
}

// ---- HTML --------------------------------------------------------------------------------------

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

const W = 640;
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

/** An inline SVG line chart of a series with its trend line. */
export function chartSvg(s: SeriesAnalysis): string {
  const pts = s.points;
  const t0 = pts[0]!.t;
  const t1 = Math.max(pts[pts.length - 1]!.t, t0 + 1);
  const hours = (t: number) => (t - t0) / 3_600_000;
  const trendAt = (t: number) => s.intercept + s.growth.slopePerHour * hours(t);
  let lo = Math.min(s.min, trendAt(t0), trendAt(t1));
  let hi = Math.max(s.max, trendAt(t0), trendAt(t1));
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const x = (t: number) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v: number) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  // Thin a long series to at most ~2 points per pixel column (min and max kept per column).
  const columns = new Map<
    number,
    { min: { t: number; v: number }; max: { t: number; v: number } }
  >();
  for (const p of pts) {
    const col = Math.round(x(p.t) * 2);
    const c = columns.get(col);
    if (!c) columns.set(col, { min: p, max: p });
    else {
      if (p.v < c.min.v) c.min = p;
      if (p.v > c.max.v) c.max = p;
    }
  }
  const path: string[] = [];
  for (const c of columns.values()) {
    const pair = c.min.t <= c.max.t ? [c.min, c.max] : [c.max, c.min];
    for (const p of pair) path.push(`${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
  }
  const ticks = [lo, (lo + hi) / 2, hi]
    .map(
      (v) =>
        `<text x="${PAD.left - 6}" y="${y(v).toFixed(1)}" text-anchor="end" dominant-baseline="middle">${escapeHtml(num(v))}</text>` +
        `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/>`,
    )
    .join('');
  const span = hours(t1);
  const xLabels = [0, 0.5, 1]
    .map(
      (f) =>
        `<text x="${(PAD.left + f * (W - PAD.left - PAD.right)).toFixed(1)}" y="${H - 8}" text-anchor="${f === 0 ? 'start' : f === 1 ? 'end' : 'middle'}">${escapeHtml(num(span * f, 1))} h</text>`,
    )
    .join('');
  const growing = s.growth.verdict === 'growing';
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(s.name)}" data-series="${escapeHtml(s.name)}">` +
    `<rect x="0" y="0" width="${W}" height="${H}" class="bg"/>${ticks}${xLabels}` +
    `<polyline class="data" points="${path.join(' ')}"/>` +
    `<line class="trend${growing ? ' growing' : ''}" x1="${x(t0).toFixed(1)}" y1="${y(trendAt(t0)).toFixed(1)}" x2="${x(t1).toFixed(1)}" y2="${y(trendAt(t1)).toFixed(1)}"/>` +
    '</svg>'
  );
}

export function renderHtml(a: Analysis, title = 'Trustflow analysis'): string {
  const rows = a.series
    .map(
      (s) =>
        `<tr class="${s.growth.verdict}"><td>${escapeHtml(s.name)}</td><td>${num(s.first)}</td><td>${num(s.last)}</td>` +
        `<td>${num(s.min)}</td><td>${num(s.max)}</td><td>${escapeHtml(perHour(s))}</td>` +
        `<td>${s.growth.confidence.toFixed(3)}</td><td>${verdictText(s)}</td><td>${escapeHtml(s.growth.reason)}</td></tr>`,
    )
    .join('\n');
  const charts = a.series
    .map(
      (s) =>
        `<figure><figcaption>${escapeHtml(s.name)}: ${escapeHtml(perHour(s))}, confidence ${s.growth.confidence.toFixed(3)}, ${verdictText(s)}</figcaption>${chartSvg(s)}</figure>`,
    )
    .join('\n');
  const fds = a.fds
    ? `<p>File descriptors: mean ${num(a.fds.mean)}, variance ${num(a.fds.variance)}, standard deviation ${num(a.fds.stddev)}, range ${a.fds.min} to ${a.fds.max}.</p>`
    : '';
  const warnings = a.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px}table{border-collapse:collapse;margin:12px 0}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:right}td:first-child,td:last-child,th{text-align:left}
tr.growing td{background:#ffebe9}
figure{display:inline-block;margin:8px 16px 16px 0}figcaption{font-weight:600;margin-bottom:4px}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
svg .bg{fill:#f6f8fa}svg .grid{stroke:#d0d7de;stroke-width:1}
svg .data{fill:none;stroke:#0969da;stroke-width:1.5}
svg .trend{stroke:#57606a;stroke-width:1.5;stroke-dasharray:6 4}svg .trend.growing{stroke:#cf222e}
</style></head><body>
<h1>${escapeHtml(title)}</h1>
<p>${a.rows} rows from ${escapeHtml(a.files.map((f) => basename(f)).join(', '))}, ${escapeHtml(a.firstAt ?? '-')} to ${escapeHtml(a.lastAt ?? '-')} (${num(a.spanHours)} h); ${a.rowsWithErrors} rows with errors.</p>
${warnings ? `<ul class="warnings">${warnings}</ul>` : ''}
<table><thead><tr><th>series</th><th>first</th><th>last</th><th>min</th><th>max</th><th>growth</th><th>confidence</th><th>verdict</th><th>why</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${fds}
<p>Growth is the Theil-Sen slope of each series' lower envelope; confidence is the smallest one-sided Mann-Kendall confidence over the window and each of its thirds, so a step or a warm-up is not called a leak. The dashed line on each chart has the estimated slope (red when the series grows).</p>
<section class="charts">
${charts}
</section>
</body></html>
`;
}

export async function runAnalyze(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        html: { type: 'string' },
        json: { type: 'boolean', default: false },
        'min-confidence': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (positionals.length === 0) throw new UsageError('analyze needs at least one <csv> file');
    let minConfidence: number | undefined;
    if (values['min-confidence'] !== undefined) {
      minConfidence = Number(values['min-confidence']);
      if (!(minConfidence >= 0.5 && minConfidence <= 1)) {
        throw new UsageError(
          `--min-confidence must be a number from 0.5 to 1, got "${values['min-confidence']}"`,
        );
      }
    }
    const inputs: { name: string; text: string }[] = [];
    for (const file of positionals) {
      try {
        inputs.push({ name: file, text: await readFile(file, 'utf8') });
      } catch (error) {
        throw new Error(`cannot read ${file}: ${(error as Error).message}`);
      }
    }
    const analysis = analyzeCsv(inputs, { minConfidence });
    if (values.json) {
      const { series, ...rest } = analysis;
      const slim = series.map(({ points: _p, ...s }) => s);
      process.stdout.write(`${JSON.stringify({ ...rest, series: slim }, null, 2)}\n`);
    } else {
      process.stdout.write(formatAnalysis(analysis));
    }
    if (values.html) {
      await writeFile(values.html, renderHtml(analysis));
      if (!values.json) process.stdout.write(`report written to ${values.html}\n`);
    }
    return 0;
  } catch (error) {
    const e = error as Error & { code?: string };
    if (error instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(
        `trustflow analyze: ${e.message}\nRun trustflow analyze --help for usage.\n`,
      );
      return 2;
    }
    process.stderr.write(`trustflow analyze: ${e.message}\n`);
    return 1;
  }
}
