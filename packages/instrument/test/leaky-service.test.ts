import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  killChildren,
  lineOf,
  NODE22,
  NODE24,
  PRELOAD,
  readReport,
  run,
  tempDir,
} from './preload-helpers.js';

const SERVICE = fileURLToPath(
  new URL('../../../examples/leaky-service/service.mjs', import.meta.url),
);

afterEach(killChildren);

async function leakSites(): Promise<Record<string, string>> {
  const at = async (marker: string) => `${SERVICE}:${await lineOf(SERVICE, marker)}`;
  return {
    'fs.fd': await at('LEAK:fd'),
    'net.socket': await at('LEAK:socket'),
    timer: await at('LEAK:timer'),
    'libp2p.stream': await at('LEAK:stream'),
  };
}

/** Runs the service under the preload and returns its exit report. */
async function exitReport(node: string, args: string[], extraEnv: Record<string, string> = {}) {
  const dir = await tempDir();
  try {
    const file = join(dir.path, 'report.json');
    const result = await run(
      node,
      ['--import', PRELOAD, SERVICE, '--run-for', '1500ms', '--every', '100ms', ...args],
      {
        env: cleanEnv({
          TRUSTFLOW_REPORT: 'exit',
          TRUSTFLOW_REPORT_FILE: file,
          TRUSTFLOW_STACKS: 'all',
          ...extraEnv,
        }),
        timeoutMs: 30_000,
      },
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const jobs = Number(/(\d+) jobs done/.exec(result.stdout)?.[1]);
    expect(jobs).toBeGreaterThan(3);
    return { report: await readReport(file), jobs };
  } finally {
    await dir.remove();
  }
}

// Timers come from the handles source by default, from the async-hooks source when it is named.
const WITH_ASYNC_HOOKS = { TRUSTFLOW_PLUGINS: 'fs,net,libp2p,async-hooks,buffer-pool' };

describe.each([
  ['Node 24', NODE24, {}],
  ['Node 22', NODE22, {}],
  ['Node 24 with the async-hooks source', NODE24, WITH_ASYNC_HOOKS],
] as const)('examples/leaky-service on %s', (_name, node, env) => {
  it.runIf(node !== undefined)(
    'the exit report names every leak, once per job, at its line',
    async () => {
      const { report, jobs } = await exitReport(node!, [], env);
      const sites = await leakSites();
      for (const [kind, site] of Object.entries(sites)) {
        const group = report.leaks.find(
          (l) => l.kind === kind && l.site?.replace(/:\d+$/, '') === site,
        );
        expect(group, `${kind} at ${site}`).toBeDefined();
        expect(group!.reason).toBe('open-at-exit');
        expect(group!.count).toBe(jobs);
      }
      // the leaks come first: they are the largest groups
      expect(new Set(report.leaks.slice(0, 4).map((l) => l.count))).toEqual(new Set([jobs]));
    },
  );

  it.runIf(node !== undefined)('the clean run reports nothing', async () => {
    const { report } = await exitReport(node!, ['--clean'], env);
    expect(report.leaks).toEqual([]);
    // it did open (and close) every kind; only unref'd timers of libp2p are still pending
    for (const kind of ['fs.fd', 'net.socket', 'timer', 'libp2p.stream']) {
      expect(report.opened[kind], kind).toBeGreaterThan(3);
    }
    for (const kind of [
      'fs.fd',
      'net.socket',
      'net.server',
      'libp2p.stream',
      'libp2p.connection',
    ]) {
      expect(report.active[kind] ?? 0, kind).toBe(0);
    }
  });
});
