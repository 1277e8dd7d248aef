import { describe, expect, it } from 'vitest';
import {
  fixture,
  lineOf,
  NODE22,
  NODE24,
  PRELOAD,
  runForReport,
  useHttpServer,
} from './preload-helpers.js';

// The net and fs plugins patch node:net and node:fs/promises when the application first asks for
// them (so a program that never does skips loading them): every way to a socket or a FileHandle
// must still be seen, and leaks still named with their line.
const server = useHttpServer();

const routes = [
  ['import', 'net.socket', 'import("node:net")'],
  ['require', 'net.socket', 'require("net"), without node:'],
  ['builtin', 'net.socket', 'process.getBuiltinModule("node:net")'],
  ['http', 'net.socket', 'require("node:http")'],
  ['fetch', 'net.socket', 'fetch() (no builtin asked for)'],
  ['fs.promises', 'fs.filehandle', 'require("node:fs").promises'],
  ['fs/promises', 'fs.filehandle', 'import("node:fs/promises")'],
  ['stream', 'fs.stream', 'fs.createReadStream'],
] as const;

describe.each([
  ['Node 24', NODE24],
  ['Node 22', NODE22],
] as const)('builtins patched on first use, on %s', (_name, node) => {
  it.runIf(node !== undefined).each(routes)(
    'route %s: the %s it leaves open is reported (%s)',
    async (route, kind) => {
      const app = fixture('app-lazy.mjs');
      const { result, report } = await runForReport(node!, [
        '--import',
        PRELOAD,
        app,
        route,
        String(server.port),
      ]);
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe(`opened ${route}\n`);
      expect(result.code).toBe(0);
      const leaks = report.leaks.filter((l) => l.kind === kind);
      expect(leaks.map((l) => l.count)).toEqual([1]);
      if (route !== 'fetch') {
        // fetch connects from undici's own code, a turn later: no line of the app to name
        const line = await lineOf(app, `LEAK:${route}`);
        expect(leaks[0]!.site?.replace(/:\d+$/, '')).toBe(`${app}:${line}`);
      }
    },
  );
});
