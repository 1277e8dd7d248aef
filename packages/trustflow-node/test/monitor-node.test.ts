import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
// The monitor lives in @trustflow/instrument (the `trustflow monitor` command); its built module
// is used directly here, as the soak script does.
import { parseCsv } from '../../instrument/dist/cli/analyze.js';
import { MONITOR_COLUMNS, runMonitor } from '../../instrument/dist/cli/monitor.js';

const BIN = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
let child: ChildProcess | undefined;

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  child = undefined;
});

describe('trustflow monitor on a running trustflow-node', () => {
  it('writes consistent rows with the figures of the node and its metrics endpoint', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tf-monitor-node-'));
    child = spawn(
      process.execPath,
      [BIN, 'start', '--port', '0', '--metrics-port', '0', '--data-dir', join(dir, 'data')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    const metricsUrl = await new Promise<string>((resolve, reject) => {
      child!.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /metrics on (\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      child!.once('exit', (code) => reject(new Error(`node exited with ${code}: ${out}`)));
    });
    const csv = join(dir, 'monitor.csv');
    const code = await runMonitor([
      String(child.pid),
      '--interval',
      '200ms',
      '--count',
      '3',
      '--out',
      csv,
      '--metrics-url',
      metricsUrl,
    ]);
    expect(code).toBe(0);
    const rows = parseCsv(await readFile(csv, 'utf8'));
    expect(rows[0]).toEqual([...MONITOR_COLUMNS]);
    expect(rows).toHaveLength(4);
    const col = (name: string) => MONITOR_COLUMNS.indexOf(name as never);
    for (const cells of rows.slice(1)) {
      expect(cells).toHaveLength(MONITOR_COLUMNS.length);
      expect(cells[col('error')]).toBe('');
      expect(cells[col('pid')]).toBe(String(child.pid));
      expect(Number(cells[col('rss_mb')])).toBeGreaterThan(20);
      expect(Number(cells[col('file_descriptors')])).toBeGreaterThan(5);
      // the node's tracker holds its listening sockets, timers and pools
      expect(Number(cells[col('async_resources')])).toBeGreaterThan(0);
      expect(Number(cells[col('heap_used_mb')])).toBeGreaterThan(1);
      expect(Number(cells[col('heap_total_mb')])).toBeGreaterThanOrEqual(
        Number(cells[col('heap_used_mb')]),
      );
      expect(cells[col('active_streams')]).toBe('0');
      expect(cells[col('service_cache')]).toBe('0');
    }
    child.kill('SIGINT');
    const [exitCode] = await once(child, 'exit');
    expect(exitCode).toBe(0);
    expect(out).toMatch(/stopped in \d+ ms \(drained\)/);
  });
});
