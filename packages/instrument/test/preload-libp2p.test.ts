import { afterEach, describe, expect, it } from 'vitest';
import {
  fixture,
  killChildren,
  lineOf,
  NODE22,
  NODE24,
  PRELOAD,
  runForReport,
} from './preload-helpers.js';

const APP = fixture('app-libp2p.mjs');
afterEach(killChildren);

async function report(node: string, args: string[]) {
  // (metrics on, as an application would run: libp2p gets a real meter)
  const { result, report } = await runForReport(
    node,
    ['--import', PRELOAD, APP, ...args],
    { OTEL_METRICS_EXPORTER: undefined },
    30_000,
  );
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return { result, report };
}

describe.each([
  ['Node 24', NODE24],
  ['Node 22', NODE22],
] as const)('zero-code libp2p on %s', (_name, node) => {
  it.runIf(node !== undefined)(
    'a libp2p app with no code change reports its streams, the leaked one at its line',
    async () => {
      const { result, report: r } = await report(node!, []);
      expect(result.stdout).toContain('stream /fixture/1.0.0 open');
      expect(r.opened['libp2p.connection']).toBeGreaterThanOrEqual(2);
      const line = await lineOf(APP, 'LEAK:stream');
      const outbound = r.leaks.filter(
        (l) => l.kind === 'libp2p.stream' && l.sample.attributes['libp2p.direction'] === 'outbound',
      );
      expect(outbound.map((l) => [l.count, l.site?.replace(/:\d+$/, '')])).toEqual([
        [1, `${APP}:${line}`],
      ]);
      expect(outbound[0]!.sample.attributes['libp2p.protocol']).toBe('/fixture/1.0.0');
    },
  );

  it.runIf(node !== undefined)('an app that passes its own metrics keeps them', async () => {
    const { result, report: r } = await report(node!, ['own-metrics']);
    expect(result.stdout).toContain('app tracker sees 2 streams');
    expect(r.opened['libp2p.stream'] ?? 0).toBe(0);
  });
});
