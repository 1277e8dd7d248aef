import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { siteOf } from './helpers.js';

const fixture = fileURLToPath(new URL('./fixtures/named-imports.mjs', import.meta.url));

describe('ESM named imports', () => {
  it('are tracked (the fixture runs in its own Node process, on the built package)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trustflow-fs-esm-'));
    const file = join(dir, 'data.txt');
    writeFileSync(file, 'esm');
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [fixture, dir, file], {
        timeout: 20_000,
      });
      const result = JSON.parse(stdout.trim().split('\n').pop()!) as {
        opened: Record<string, number>;
        closed: Record<string, number>;
        leaks: { kind: string; site: string }[];
      };
      expect(result.opened).toMatchObject({
        'fs.fd': 2,
        'fs.filehandle': 1,
        'fs.stream': 1,
        'fs.dir': 1,
        'fs.watcher': 1,
      });
      expect(result.closed['fs.fd']).toBe(1);
      const site = (kind: string) => result.leaks.find((l) => l.kind === kind)?.site;
      expect(site('fs.fd')).toMatch(siteOf(fixture, 'MARK:esm-fd'));
      expect(site('fs.filehandle')).toMatch(siteOf(fixture, 'MARK:esm-filehandle'));
      expect(site('fs.stream')).toMatch(siteOf(fixture, 'MARK:esm-stream'));
      expect(site('fs.dir')).toMatch(siteOf(fixture, 'MARK:esm-dir'));
      expect(site('fs.watcher')).toMatch(siteOf(fixture, 'MARK:esm-watcher'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
