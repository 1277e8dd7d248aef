#!/usr/bin/env node
// The `trustflow` command.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Report } from '@trustflow/core';
import { parseReport, renderReport, UsageError } from './internal/report-text.js';

const PRELOAD = new URL('./register.js', import.meta.url);

const HELP = `Usage: trustflow <command> [options]

Commands:
  run [options] -- <command...>   run a program with the preload; print its leak report when it exits
  report <file-or-url>            render a JSON leak report (file, or http://.../trustflow/report) as text
  monitor [options]               sample a process (rss, fds, heap...) into a CSV file
  analyze <file.csv>              growth per hour and fd variance of a monitor CSV (text or HTML)

Run \`trustflow <command> --help\` for the options of a command.
Options: -h, --help   this help;  -v, --version   the version
`;

const RUN_HELP = `Usage: trustflow run [options] -- <command...>

Runs <command> (for example \`node server.js\`, \`npm start\`) with the @trustflow/instrument preload
in NODE_OPTIONS, so every Node.js process it starts is instrumented. When the command exits, the
leak report of each instrumented process is printed to stderr: what was still open, grouped by the
line that created it. The exit code (or 128 + signal number) of the command is passed through.
SIGINT, SIGTERM and SIGHUP sent to trustflow are forwarded to the command.

Options:
  --stacks <mode>       creation stacks: all (default here), sampled or off (TRUSTFLOW_STACKS)
  --plugins <list>      plugins to enable, comma list (TRUSTFLOW_PLUGINS; default: every one that applies)
  --metrics <list>      metrics exporters: prometheus, otlp, console or none (OTEL_METRICS_EXPORTER)
  --port <port>         Prometheus endpoint port, 0 for any free port (OTEL_EXPORTER_PROMETHEUS_PORT)
  --out <file>          also keep the main process's report as JSON in <file>
  --json                print the report(s) as JSON instead of text
  -h, --help            this help

Other TRUSTFLOW_* and OTEL_* variables in the environment are passed on as they are.
`;

const REPORT_HELP = `Usage: trustflow report [--json] <file-or-url>

Reads a Trustflow leak report (schema trustflow.report/v1): a JSON file written with
TRUSTFLOW_REPORT_FILE, or the /trustflow/report URL of a running instrumented process
(for example http://127.0.0.1:9464/trustflow/report; add ?open=1 to list every open resource),
and prints it as text: counts, then each leak group with its site and stack.

Options:
  --json       print the (validated) JSON instead of text
  -h, --help   this help
`;

function fail(message: string): never {
  throw new UsageError(message);
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
}

async function runReport(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(REPORT_HELP);
    return 0;
  }
  if (positionals.length !== 1)
    fail('report: give exactly one file or URL (see trustflow report --help)');
  const source = positionals[0]!;
  let text: string;
  if (/^https?:\/\//i.test(source)) {
    let response: Response;
    try {
      response = await fetch(source, { signal: AbortSignal.timeout(10_000) });
    } catch (error) {
      fail(
        `report: cannot fetch ${source}: ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}`,
      );
    }
    if (!response.ok) fail(`report: ${source} answered HTTP ${response.status}`);
    text = await response.text();
  } else {
    try {
      text = readFileSync(source, 'utf8');
    } catch (error) {
      fail(
        `report: cannot read ${source}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      );
    }
  }
  const report = parseReport(text, source);
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
  return 0;
}

function signalNumber(signal: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[signal] ?? 0;
}

async function runRun(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const command = dash >= 0 ? argv.slice(dash + 1) : [];
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      stacks: { type: 'string' },
      plugins: { type: 'string' },
      metrics: { type: 'string' },
      port: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(RUN_HELP);
    return 0;
  }
  if (positionals.length > 0 && command.length === 0) command.push(...positionals);
  else if (positionals.length > 0) fail(`run: unexpected argument ${positionals[0]} before --`);
  if (command.length === 0)
    fail('run: give the command to run after -- (see trustflow run --help)');
  if (values.stacks !== undefined && !['all', 'sampled', 'off'].includes(values.stacks)) {
    fail(`run: --stacks must be all, sampled or off, got ${values.stacks}`);
  }
  if (values.port !== undefined && !/^\d+$/.test(values.port)) {
    fail(`run: --port must be a port number, got ${values.port}`);
  }

  const dir = mkdtempSync(join(tmpdir(), 'trustflow-run-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TRUSTFLOW_REPORT: 'exit',
    TRUSTFLOW_REPORT_FILE: join(dir, 'report-%p.json'),
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD.href}`.trim(),
  };
  delete env.TRUSTFLOW_DISABLED;
  env.TRUSTFLOW_STACKS = values.stacks ?? process.env.TRUSTFLOW_STACKS ?? 'all';
  if (values.plugins !== undefined) env.TRUSTFLOW_PLUGINS = values.plugins;
  if (values.metrics !== undefined) env.OTEL_METRICS_EXPORTER = values.metrics;
  if (values.port !== undefined) env.OTEL_EXPORTER_PROMETHEUS_PORT = values.port;

  const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env });
  const forward = (signal: NodeJS.Signals) => () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const forwarded = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map(
    (signal) => [signal, forward(signal)] as const,
  );
  for (const [signal, listener] of forwarded) process.on(signal, listener);
  const outcome = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    error?: Error;
  }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  for (const [signal, listener] of forwarded) process.removeListener(signal, listener);

  try {
    if (outcome.error) {
      const code = (outcome.error as NodeJS.ErrnoException).code;
      process.stderr.write(
        `trustflow run: cannot start ${command[0]}: ${code === 'ENOENT' ? 'command not found' : outcome.error.message}\n`,
      );
      return code === 'ENOENT' ? 127 : 126;
    }
    const files = readdirSync(dir)
      .filter((f) => /^report-\d+\.json$/.test(f))
      .map((f) => ({ pid: Number(f.slice(7, -5)), path: join(dir, f) }))
      // the command's own process first, then the others in the order they were started
      .sort((a, b) => (a.pid === child.pid ? -1 : b.pid === child.pid ? 1 : a.pid - b.pid));
    if (files.length === 0) {
      process.stderr.write(
        'trustflow run: no leak report was written (is the command a Node.js program? was it killed with SIGKILL?)\n',
      );
    }
    for (const [i, file] of files.entries()) {
      let report: Report;
      try {
        report = parseReport(readFileSync(file.path, 'utf8'), file.path);
      } catch (error) {
        process.stderr.write(`trustflow run: ${(error as Error).message}\n`);
        continue;
      }
      if (i === 0 && values.out) copyFileSync(file.path, values.out);
      const header = files.length > 1 ? `== process ${file.pid}\n` : '';
      process.stderr.write(
        values.json ? `${JSON.stringify(report, null, 2)}\n` : `${header}${renderReport(report)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (outcome.signal) return 128 + signalNumber(outcome.signal);
  return outcome.code ?? 1;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return runRun(rest);
    case 'report':
      return runReport(rest);
    case 'monitor': {
      const { runMonitor } = await import('./cli/monitor.js');
      return runMonitor(rest);
    }
    case 'analyze': {
      const { runAnalyze } = await import('./cli/analyze.js');
      return runAnalyze(rest);
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return command === undefined ? 1 : 0;
    case '-v':
    case '--version':
      process.stdout.write(`${version()}\n`);
      return 0;
    default:
      fail(`unknown command ${command} (see trustflow --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (
      error instanceof UsageError ||
      (error as { code?: string })?.code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`trustflow: ${(error as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(
      `trustflow: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
