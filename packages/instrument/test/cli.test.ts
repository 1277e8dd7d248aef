import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CLI,
  cleanEnv,
  eventually,
  fixture,
  freePort,
  get,
  killChildren,
  lineOf,
  NODE24,
  PRELOAD,
  run,
  start,
  tempDir,
} from './preload-helpers.js';

afterEach(killChildren);

const trustflow = (args: string[], env: Record<string, string> = {}) =>
  run(NODE24, [CLI, ...args], { env: cleanEnv(env), timeoutMs: 30_000 });

describe('the trustflow command', () => {
  it.each([
    [['--help'], /^Usage: trustflow <command>/],
    [['run', '--help'], /^Usage: trustflow run \[options\] -- <command\.\.\.>/],
    [['report', '--help'], /^Usage: trustflow report/],
    [['monitor', '--help'], /Usage/],
    [['analyze', '--help'], /Usage/],
  ])('%s prints its help', async (args, pattern) => {
    const result = await trustflow(args);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(pattern);
  });

  it('without a command prints the usage and fails; an unknown command is one line', async () => {
    const none = await trustflow([]);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/^Usage:/);
    const unknown = await trustflow(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('trustflow: unknown command frobnicate (see trustflow --help)\n');
  });

  it('run: runs the program with the preload and prints its leak report at exit', async () => {
    const app = fixture('app-leak.mjs');
    const result = await trustflow(['run', '--port', '0', '--', NODE24, app]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/app done, instrumented=true/);
    expect(result.stderr).toContain('1 x fs.fd (open-at-exit)');
    expect(result.stderr).toContain(`at ${app}:${await lineOf(app, 'LEAK:fd')}:`);
    expect(result.stderr).toMatch(/^metrics: http:\/\/127\.0\.0\.1:\d+\/metrics$/m);
  });

  it('run: passes the exit code through, and 128 + n for a signal', async () => {
    const exit3 = await trustflow(['run', '--', NODE24, '-e', 'process.exitCode = 3']);
    expect(exit3.code).toBe(3);
    expect(exit3.stderr).toContain('no leaks found');
    const killed = await trustflow([
      'run',
      '--',
      NODE24,
      '-e',
      "setInterval(() => {}, 1000); process.kill(process.pid, 'SIGTERM')",
    ]);
    expect(killed.code).toBe(128 + 15);
    // the report was still written: the interval is the leak
    expect(killed.stderr).toContain('1 x timer (open-at-exit)');
  });

  it('run: --out keeps the JSON report and --json prints JSON', async () => {
    const dir = await tempDir();
    try {
      const out = join(dir.path, 'kept.json');
      const result = await trustflow([
        'run',
        '--json',
        '--out',
        out,
        '--metrics',
        'none',
        '--',
        NODE24,
        fixture('app-leak.cjs'),
      ]);
      expect(result.code).toBe(0);
      const printed = JSON.parse(result.stderr);
      const kept = JSON.parse(await readFile(out, 'utf8'));
      expect(kept).toEqual(printed);
      expect(kept.schema).toBe('trustflow.report/v1');
      expect(kept.leaks.map((l: { kind: string }) => l.kind)).toEqual(['fs.fd']);
    } finally {
      await dir.remove();
    }
  });

  it('run: a missing command is exit code 127 and one line; a bad option is exit code 2', async () => {
    const missing = await trustflow(['run', '--', 'no-such-command-here']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toBe(
      'trustflow run: cannot start no-such-command-here: command not found\n',
    );
    const bad = await trustflow(['run', '--stacks', 'lots', '--', NODE24, '-e', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('trustflow: run: --stacks must be all, sampled or off, got lots\n');
  });

  it('report: renders a report file, or a live /trustflow/report URL, as text', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'report.json');
      const app = fixture('app-leak.mjs');
      await run(NODE24, ['--import', PRELOAD, app], {
        env: cleanEnv({
          TRUSTFLOW_REPORT: 'exit',
          TRUSTFLOW_REPORT_FILE: file,
          TRUSTFLOW_STACKS: 'all',
        }),
      });
      const fromFile = await trustflow(['report', file]);
      expect(fromFile.code).toBe(0);
      expect(fromFile.stdout).toMatch(/^trustflow report for pid \d+/);
      expect(fromFile.stdout).toContain(`at ${app}:${await lineOf(app, 'LEAK:fd')}:`);
      const asJson = await trustflow(['report', '--json', file]);
      expect(JSON.parse(asJson.stdout).schema).toBe('trustflow.report/v1');

      const port = await freePort();
      const serving = start(NODE24, ['--import', PRELOAD, fixture('app-serve.mjs')], {
        env: cleanEnv({ OTEL_EXPORTER_PROMETHEUS_PORT: String(port), TRUSTFLOW_STACKS: 'all' }),
      });
      await serving.line(/^ready$/);
      const url = `http://127.0.0.1:${port}/trustflow/report?open=1`;
      await eventually(
        async () => ((await get(url)).status === 200 ? true : undefined),
        'the endpoint',
      );
      const live = await trustflow(['report', url]);
      expect(live.code).toBe(0);
      expect(live.stdout).toContain(`trustflow report for pid ${serving.child.pid}`);
      expect(live.stdout).toContain('1 x fs.fd (open-at-exit)');
    } finally {
      await dir.remove();
    }
  });

  it('report: a missing or wrong file is one line and exit code 2', async () => {
    const missing = await trustflow(['report', '/no/such/report.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('trustflow: report: cannot read /no/such/report.json: ENOENT\n');
    const wrong = await trustflow(['report', fixture('../../package.json')]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(
      /is not a Trustflow report \(expected "schema": "trustflow\.report\/v1"\)\n$/,
    );
    const refused = await trustflow([
      'report',
      `http://127.0.0.1:${await freePort()}/trustflow/report`,
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^trustflow: report: cannot fetch http:\/\/127\.0\.0\.1:\d+\/trustflow\/report: .*ECONNREFUSED/,
    );
  });
});
