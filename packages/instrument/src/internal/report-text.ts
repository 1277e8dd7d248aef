import { formatReport, type Report } from '@trustflow/core';

/** A mistake of the user (bad argument, wrong file): printed as one line, exit code 2. */
export class UsageError extends Error {}

function fail(message: string): never {
  throw new UsageError(message);
}

/** Text for people: the core rendering plus where the metrics and the live report were. */
export function renderReport(report: Report): string {
  let text = formatReport(report);
  const extra = report.extra?.instrument as
    | { metrics?: string | null; report?: string | null; notes?: string[]; unrefLeftOut?: number }
    | undefined;
  if (extra?.unrefLeftOut) {
    text += `left out: ${extra.unrefLeftOut} unref'd handle(s) still pending (they could not keep the process alive)\n`;
  }
  if (extra?.metrics) text += `metrics: ${extra.metrics}\n`;
  for (const note of extra?.notes ?? []) text += `note: ${note}\n`;
  return text;
}

/** Parses and checks a report; a wrong document is a one-line error. */
export function parseReport(text: string, source: string): Report {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    fail(`${source} is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const report = value as Partial<Report> | null;
  if (typeof report !== 'object' || report === null || report.schema !== 'trustflow.report/v1') {
    fail(`${source} is not a Trustflow report (expected "schema": "trustflow.report/v1")`);
  }
  if (!Array.isArray(report.leaks) || typeof report.active !== 'object') {
    fail(`${source} is a damaged Trustflow report (leaks or active counts missing)`);
  }
  return report as Report;
}
