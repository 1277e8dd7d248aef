import { describe, expect, it } from 'vitest';
import {
  cleanEnv,
  fixture,
  lineOf,
  NODE22,
  NODE24,
  PRELOAD,
  run,
  runForReport,
  useHttpServer,
  warnings,
} from './preload-helpers.js';

// The preload loads and starts its bundle only when the application is about to make its first
// resource (src/register.ts): whatever that first resource is, and however the application got
// there, it must be tracked with its line, and a program that makes none must still get its exit
// report and its configuration warnings.
const server = useHttpServer();
const APP = fixture('app-first.cjs');
const appFor = (route: string) => (route === 'esm' ? fixture('app-first.mjs') : APP);
const routes = [
  ['timer', 'timer', '--require'],
  ['interval', 'timer', '--import'],
  ['kept-timer', 'timer', '--require'],
  ['wrapped-timer', 'timer', '--import'],
  ['builtin', 'fs.fd', '--require'],
  ['require', 'fs.fd', '--import'],
  ['fetch', 'net.socket', '--require'],
  ['esm', 'fs.filehandle', '--require'],
] as const;

function runFirst(node: string, flag: string, route: string, env: Record<string, string>) {
  return runForReport(node, [flag, PRELOAD, appFor(route), route, String(server.port)], env);
}

describe.each([
  ['Node 24', NODE24],
  ['Node 22', NODE22],
] as const)('the preload starts at the first resource, on %s', (_name, node) => {
  it.runIf(node !== undefined).each(routes)(
    'first %s: the %s is reported at its line (%s)',
    async (route, kind, flag) => {
      const { result, report } = await runFirst(node!, flag, route, {});
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const said = { 'wrapped-timer': ' (wrapper wrapped, 1 call)', esm: ' true' } as const;
      expect(result.stdout).toBe(`opened ${route}${said[route as keyof typeof said] ?? ''}\n`);
      const leaks = report.leaks.filter((l) => l.kind === kind);
      expect(leaks.map((l) => l.count)).toEqual([1]);
      const site = leaks[0]!.site?.replace(/:\d+$/, '');
      if (route === 'wrapped-timer') {
        // the first frame outside the preload is the application's wrapper
        expect(site).toMatch(new RegExp(`^${APP.replaceAll('.', '\\.')}:\\d+$`));
      } else if (route !== 'fetch') {
        // (fetch connects from undici's own code, a turn later: no line of the app to name)
        const app = appFor(route);
        expect(site).toBe(`${app}:${await lineOf(app, `LEAK:${route}`)}`);
      }
    },
  );

  it.runIf(node !== undefined)(
    'a program that ends before it needs the preload still gets its exit report and its warnings',
    async () => {
      const { result, report } = await runFirst(node!, '--import', 'nothing', {
        TRUSTFLOW_STACKS: 'bogus',
      });
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('opened nothing\n');
      expect(warnings(result.stderr)).toEqual([
        'trustflow: TRUSTFLOW_STACKS="bogus" is not valid (one of off, sampled, all); using the default: sampled',
      ]);
      expect(report.schema).toBe('trustflow.report/v1');
      expect(report.pid).toBeGreaterThan(0);
      expect(report.leaks).toEqual([]);
    },
  );

  it.runIf(node !== undefined)(
    'a program that makes nothing and asks for no report gets the warnings about its settings',
    async () => {
      const result = await run(node!, ['--require', PRELOAD, APP, 'nothing'], {
        env: cleanEnv({ TRUSTFLOW_STALE_AFTER: 'soon', OTEL_LOG_LEVEL: 'loud' }),
      });
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('opened nothing\n');
      expect(warnings(result.stderr)).toEqual([
        'trustflow: TRUSTFLOW_STALE_AFTER="soon" is not valid (a duration like 90s, 30m, 1h30m or 500ms); using the default: 30m',
        'trustflow: OTEL_LOG_LEVEL="loud" is not valid (one of none, error, warn, info, debug, verbose, all); using the default: error',
      ]);
    },
  );
});
