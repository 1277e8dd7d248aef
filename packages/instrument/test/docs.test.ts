import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES } from '../src/internal/config.js';
import { tempDir } from './preload-helpers.js';

const docs = (name: string) =>
  readFileSync(fileURLToPath(new URL(`../../../docs/${name}`, import.meta.url)), 'utf8');
const hasPromtool = spawnSync('sh', ['-c', 'command -v promtool']).status === 0;

/** The code blocks of a page that follow a `<!-- file: name -->` marker. */
function files(page: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of page.matchAll(/<!-- file: (\S+) -->\n```\w*\n([\s\S]*?)\n```/g)) {
    out.set(m[1]!, `${m[2]}\n`);
  }
  return out;
}

describe('docs', () => {
  it('configuration.md documents every variable the preload reads', () => {
    const page = docs('configuration.md');
    for (const name of ENV_VARIABLES) expect(page, name).toContain(`\`${name}`);
  });

  it.runIf(hasPromtool)(
    'the Prometheus configurations and alert rules of pipeline.md pass promtool',
    async () => {
      const blocks = files(docs('pipeline.md'));
      expect([...blocks.keys()].sort()).toEqual([
        'otel-collector.yaml',
        'prometheus-collector.yml',
        'prometheus.yml',
        'trustflow-rules.yml',
      ]);
      const dir = await tempDir('tf-docs-');
      try {
        for (const [name, text] of blocks) writeFileSync(join(dir.path, name), text);
        // the file_sd target file the scrape configuration watches
        mkdirSync(join(dir.path, 'targets'));
        writeFileSync(
          join(dir.path, 'targets', 'checkout.json'),
          JSON.stringify([{ targets: ['127.0.0.1:9464'], labels: { service: 'checkout' } }]),
        );
        for (const args of [
          ['check', 'rules', 'trustflow-rules.yml'],
          ['check', 'config', 'prometheus.yml'],
          ['check', 'config', 'prometheus-collector.yml'],
        ]) {
          const r = spawnSync('promtool', args, { cwd: dir.path, encoding: 'utf8' });
          expect(`${r.stdout}${r.stderr}`, args.join(' ')).not.toMatch(/FAILED|error|warning/i);
          expect(r.status, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
        }
      } finally {
        await dir.remove();
      }
    },
  );
});
