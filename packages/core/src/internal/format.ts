import type { LeakGroup, Report } from '../types.js';

const MB = 1024 * 1024;

function age(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)}s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(1)}m`;
  return `${(m / 60).toFixed(1)}h`;
}

function counts(title: string, values: Record<string, number>): string[] {
  const keys = Object.keys(values)
    .filter((k) => values[k] !== 0)
    .sort();
  if (keys.length === 0) return [];
  return [`${title}: ${keys.map((k) => `${k}=${values[k]}`).join(', ')}`];
}

function group(leak: LeakGroup): string[] {
  const lines = [
    `  ${leak.count} x ${leak.kind} (${leak.reason}), oldest ${age(leak.oldestAgeMs)}`,
    `    at ${leak.site ?? '(no stack sampled: set TRUSTFLOW_STACKS=all to see every site)'}`,
  ];
  const attrs = Object.entries(leak.sample.attributes);
  if (attrs.length > 0) {
    lines.push(`    sample: ${attrs.map(([k, v]) => `${k}=${String(v)}`).join(' ')}`);
  }
  for (const frame of leak.stack.slice(1, 6)) lines.push(`      ${frame}`);
  return lines;
}

/** Renders a report for people: counts, then each leak group with its site and stack. */
export function formatReport(report: Report): string {
  const p = report.process;
  const lines = [
    `trustflow report for pid ${report.pid} at ${report.generatedAt}`,
    `process: rss ${(p.rssBytes / MB).toFixed(1)} MB, heap used ${(p.heapUsedBytes / MB).toFixed(1)} MB, open fds ${p.openFds ?? 'n/a'}`,
    ...counts('active', report.active),
    ...counts('opened', report.opened),
  ];
  if (report.overflow > 0) lines.push(`not tracked (cap reached): ${report.overflow}`);
  if (report.instrumentationErrors > 0) {
    lines.push(`instrumentation errors caught: ${report.instrumentationErrors}`);
  }
  if (report.leaks.length === 0) {
    lines.push('no leaks found');
  } else {
    const total = report.leaks.reduce((n, l) => n + l.count, 0);
    lines.push(`${total} leaked resource(s) in ${report.leaks.length} group(s):`);
    for (const leak of report.leaks) lines.push(...group(leak));
  }
  return `${lines.join('\n')}\n`;
}
