import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const suiteDir = fileURLToPath(new URL('./fixtures/vitest-suite/', import.meta.url));
const fixture = join(suiteDir, 'suite.fixture.ts');
const vitestBin = join(
  dirname(createRequire(import.meta.url).resolve('vitest/package.json')),
  'vitest.mjs',
);

/** `file:line:` of the fixture line marked `// LEAK:<name>`. */
function site(name: string): string {
  const lines = readFileSync(fixture, 'utf8').split('\n');
  return `${fixture}:${lines.findIndex((l) => l.includes(`// LEAK:${name}`)) + 1}:`;
}

interface JsonReport {
  testResults: {
    assertionResults: { fullName: string; status: string; failureMessages: string[] }[];
  }[];
}

/** Runs vitest on the fixture suite in its own process, with its own config. */
async function runFixtureSuite(): Promise<{ output: string; report: JsonReport }> {
  const out = mkdtempSync(join(tmpdir(), 'leak-test-vitest-'));
  const json = join(out, 'report.json');
  try {
    const output = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [
          vitestBin,
          'run',
          '--config',
          join(suiteDir, 'vitest.config.ts'),
          '--reporter=default',
          '--reporter=json',
          `--outputFile.json=${json}`,
        ],
        { env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, timeout: 60_000 },
        (error, stdout, stderr) => {
          // The suite has failing tests on purpose: exit code 1 is expected.
          if (error && error.code !== 1) reject(new Error(`vitest failed: ${stderr}`));
          else resolve(`${stdout}\n${stderr}`);
        },
      );
    });
    return { output, report: JSON.parse(readFileSync(json, 'utf8')) as JsonReport };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

describe('@trustflow/leak-test/vitest in a real vitest run', () => {
  it('fails exactly the leaking tests, naming each test and the line of each leak', async () => {
    const { output, report } = await runFixtureSuite();
    const results = Object.fromEntries(
      report.testResults[0]!.assertionResults.map((r) => [r.fullName, r]),
    );
    const status = Object.fromEntries(Object.entries(results).map(([k, r]) => [k, r.status]));
    expect(status).toEqual({
      'sockets closes its socket': 'passed',
      'sockets leaks a socket': 'failed',
      'cleanup in afterEach passes: its afterEach closes the server before the check': 'passed',
      'leaks a server': 'failed',
      'leaks an interval': 'failed',
      'leaks an fd': 'failed',
      'closes its fd and waits for its timer': 'passed',
      'fails on its own (its leftovers are not reported on top)': 'failed',
      'hands a timer on, with skipLeakCheck': 'passed',
      'toLeak passes a clean function with .not': 'passed',
      'toLeak fails a leaking function with .not': 'failed',
      'toLeak passes a leak asserted with toLeak (the per-test check does not report it again)':
        'passed',
    });

    const message = (name: string) => results[name]!.failureMessages.join('\n');
    expect(message('sockets leaks a socket')).toMatch(
      /^LeakError: test "sockets > leaks a socket" leaked 2 resources in 2 groups:/,
    );
    expect(message('sockets leaks a socket')).toContain(`at ${site('socket')}`);
    expect(message('leaks a server')).toMatch(
      /^LeakError: test "leaks a server" leaked 1 resource in 1 group:\n {2}1 x (net\.server|async\.TCPSERVERWRAP) \(still open\)/,
    );
    expect(message('leaks a server')).toContain(`at ${site('server')}`);
    expect(message('leaks an interval')).toMatch(/1 x timer \(still open\) hasRef=true/);
    expect(message('leaks an interval')).toContain(`at ${site('interval')}`);
    expect(message('leaks an fd')).toMatch(/1 x fs\.fd \(still open\) file\.path=/);
    expect(message('leaks an fd')).toContain(`at ${site('fd')}`);
    expect(message('fails on its own (its leftovers are not reported on top)')).not.toMatch(
      /LeakError/,
    );
    expect(message('toLeak fails a leaking function with .not')).toContain(
      'expected the function not to leak, but it left 1 resource in 1 group:',
    );
    expect(message('toLeak fails a leaking function with .not')).toContain(`at ${site('matcher')}`);

    // The console output names the leaking tests too.
    expect(output).toContain('FAIL  suite.fixture.ts > sockets > leaks a socket');
    expect(output).toContain('LeakError: test "leaks an fd" leaked 1 resource in 1 group:');
    expect(output).toMatch(/Tests {2}6 failed \| 6 passed \(12\)/);
  }, 90_000);
});
