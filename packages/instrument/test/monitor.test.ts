import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCsv } from '../src/cli/analyze.js';
import { csvLine, MONITOR_COLUMNS, parsePrometheus, runMonitor } from '../src/cli/monitor.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/sampled-process.mjs', import.meta.url));
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
});

async function sampledProcess(): Promise<{ pid: number; metricsUrl: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [FIXTURE], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  return { pid: child.pid!, metricsUrl: `http://127.0.0.1:${port}/metrics`, child };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function tempCsv(): Promise<string> {
  return join(await mkdtemp(join(tmpdir(), 'tf-monitor-')), 'monitor.csv');
}

function rowsOf(text: string): string[][] {
  return parseCsv(text);
}

describe('trustflow monitor', () => {
  it('samples a running process into consistent CSV rows', async () => {
    const { pid, metricsUrl } = await sampledProcess();
    const out = await tempCsv();
    const code = await runMonitor([
      String(pid),
      '--interval',
      '50ms',
      '--count',
      '4',
      '--out',
      out,
      '--metrics-url',
      metricsUrl,
    ]);
    expect(code).toBe(0);
    const rows = rowsOf(await readFile(out, 'utf8'));
    expect(rows[0]).toEqual([...MONITOR_COLUMNS]);
    expect(rows).toHaveLength(5);
    for (const cells of rows) expect(cells).toHaveLength(MONITOR_COLUMNS.length);
    const col = (name: string) => MONITOR_COLUMNS.indexOf(name as never);
    for (const cells of rows.slice(1)) {
      expect(cells[col('pid')]).toBe(String(pid));
      expect(Number.isNaN(Date.parse(cells[col('timestamp')]!))).toBe(false);
      expect(Number(cells[col('rss_mb')])).toBeGreaterThan(5);
      expect(Number(cells[col('vsz_mb')])).toBeGreaterThan(Number(cells[col('rss_mb')]));
      expect(Number(cells[col('threads')])).toBeGreaterThanOrEqual(1);
      expect(Number(cells[col('file_descriptors')])).toBeGreaterThan(3);
      // both ends of the loopback connection live in the sampled process, plus the metrics
      // scrape's keep-alive connection once it exists; the two listening sockets are not counted
      expect(['2', '3']).toContain(cells[col('tcp_connections')]);
      expect(Number(cells[col('cpu_percent')])).toBeGreaterThanOrEqual(0);
      expect(cells.at(-1)).toBe('');
      expect(cells[col('async_resources')]).toBe('6');
      expect(cells[col('heap_used_mb')]).toBe('5.00');
      expect(cells[col('heap_total_mb')]).toBe('64.00');
      expect(cells[col('active_streams')]).toBe('3');
      expect(cells[col('service_cache')]).toBe('4');
      expect(cells[col('error')]).toBe('');
    }
  });

  it('puts errors in their own column and keeps the field count', async () => {
    const { pid } = await sampledProcess();
    const out = await tempCsv();
    const port = await freePort();
    await runMonitor([
      String(pid),
      '--interval',
      '20ms',
      '--count',
      '2',
      '--out',
      out,
      '--metrics-url',
      `http://127.0.0.1:${port}/metrics`,
    ]);
    const rows = rowsOf(await readFile(out, 'utf8'));
    expect(rows).toHaveLength(3);
    for (const cells of rows.slice(1)) {
      expect(cells).toHaveLength(MONITOR_COLUMNS.length);
      expect(cells.at(-1)).toBe('metrics: ECONNREFUSED');
      expect(Number(cells[MONITOR_COLUMNS.indexOf('rss_mb')])).toBeGreaterThan(0);
      expect(cells[MONITOR_COLUMNS.indexOf('heap_used_mb')]).toBe('');
    }
  });

  it('ends with an error row of the same width when the process exits', async () => {
    const { pid, child } = await sampledProcess();
    const out = await tempCsv();
    const done = runMonitor([String(pid), '--interval', '30ms', '--out', out]);
    // let it write a row or two, then end the process
    await new Promise((resolve) => setTimeout(resolve, 100));
    child.kill('SIGTERM');
    await once(child, 'exit');
    expect(await done).toBe(1);
    const rows = rowsOf(await readFile(out, 'utf8'));
    const last = rows.at(-1)!;
    expect(last).toHaveLength(MONITOR_COLUMNS.length);
    expect(last.at(-1)).toBe(`proc: process ${pid} not found`);
    expect(last[MONITOR_COLUMNS.indexOf('rss_mb')]).toBe('');
    expect(rows.filter((r) => r[0] === 'timestamp')).toHaveLength(1);
  });

  it('rotates by size, with the header once at the top of every file', async () => {
    const { pid } = await sampledProcess();
    const out = await tempCsv();
    await runMonitor([
      String(pid),
      '--interval',
      '10ms',
      '--count',
      '25',
      '--out',
      out,
      '--max-size',
      '1KB',
    ]);
    const dir = join(out, '..');
    const files = (await readdir(dir)).sort();
    // 25 rows of 1 KB-bounded files rotate at least once; how often depends on the rows' widths
    // (a row sampled before the process's metrics endpoint answered is shorter)
    expect(files.length).toBeGreaterThanOrEqual(2);
    let dataRows = 0;
    for (const file of files) {
      const text = await readFile(join(dir, file), 'utf8');
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024);
      const rows = rowsOf(text);
      expect(rows[0]).toEqual([...MONITOR_COLUMNS]);
      expect(rows.slice(1).every((r) => r[0] !== 'timestamp')).toBe(true);
      for (const r of rows) expect(r).toHaveLength(MONITOR_COLUMNS.length);
      dataRows += rows.length - 1;
    }
    // at most 5 rotated files are kept, so older rows may be gone, never split
    expect(dataRows).toBeLessThanOrEqual(25);
    expect(files).toContain('monitor.csv.1');
    // a file is rotated only when the next row would not fit: the first data row of the live
    // file did not fit after the rows of monitor.csv.1
    const live = await readFile(out, 'utf8');
    const firstRow = live.split('\n')[1]!;
    const rotated = await readFile(join(dir, 'monitor.csv.1'), 'utf8');
    expect(Buffer.byteLength(rotated) + Buffer.byteLength(firstRow) + 1).toBeGreaterThan(1024);
  });

  it('quotes fields and reads the Prometheus text format', () => {
    expect(csvLine(['a', 'b,c', 'say "hi"'])).toBe('a,"b,c","say ""hi"""\n');
    expect(parseCsv(csvLine(['a', 'b,c', 'x\ny']))).toEqual([['a', 'b,c', 'x\ny']]);
    expect(parsePrometheus('# c\nm{a="1",b="x\\"y"} 2.5 123\nn 7\nbad line\n')).toEqual([
      { name: 'm', labels: { a: '1', b: 'x"y' }, value: 2.5 },
      { name: 'n', labels: {}, value: 7 },
    ]);
  });

  it('rejects bad arguments with a one-line reason', async () => {
    const writes: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((text: string) => {
      writes.push(text);
      return true;
    }) as typeof process.stderr.write;
    try {
      expect(await runMonitor(['abc'])).toBe(2);
      expect(await runMonitor(['1', '--interval', 'soon'])).toBe(2);
      expect(await runMonitor(['1', '--max-size', '10'])).toBe(2);
    } finally {
      process.stderr.write = original;
    }
    expect(writes.join('')).toContain('<pid> must be a positive integer, got "abc"');
    expect(writes.join('')).toContain(
      '--interval must be a duration like 500ms, 30s or 5m, got "soon"',
    );
    expect(writes.join('')).toContain('--max-size must be at least 1KB, got "10"');
  });
});
