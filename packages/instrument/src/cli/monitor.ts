import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { appendFile, rename, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';

/**
 * `trustflow monitor <pid>`: samples any process into CSV, one row per interval.
 *
 * The columns follow the Go node's monitoring script, adapted to what Node has:
 * - goroutines: Node has one JavaScript thread; its concurrent work lives in libuv handles and
 *   the resources built on them (sockets, timers, streams, file handles). `async_resources` is
 *   the number of resources the process's Trustflow tracker holds open (every
 *   `trustflow_resource_active` series summed), read from its metrics endpoint; it is empty
 *   without one. `threads` stays the OS thread count (V8 and libuv pool threads).
 * - heap_allocs / heap_inuse_mb: `heap_used_mb` (V8 heap in use) and `heap_total_mb` (the heap
 *   V8 has reserved, all spaces) from the metrics endpoint (empty without one). Node exposes no
 *   allocation count, so there is no heap_allocs.
 * - active_streams and service_cache come from the endpoint too (libp2p streams, the
 *   trustflow-node offer cache). The Go script wrote 0 there when it did not know; an unknown
 *   figure is an empty cell here, never a 0.
 * - relay_circuits is dropped: trustflow-node runs no circuit relay.
 * - tcp_connections counts ESTABLISHED sockets of the process only (the Go script counted
 *   listening sockets too).
 * Every row has the same number of fields; a failure goes in the `error` column of its row.
 */

export const MONITOR_COLUMNS = [
  'timestamp',
  'pid',
  'cpu_percent',
  'mem_percent',
  'rss_mb',
  'vsz_mb',
  'threads',
  'file_descriptors',
  'tcp_connections',
  'async_resources',
  'heap_used_mb',
  'heap_total_mb',
  'active_streams',
  'service_cache',
  'error',
] as const;

export type MonitorColumn = (typeof MONITOR_COLUMNS)[number];
export type MonitorRow = Record<MonitorColumn, string>;

const USAGE = `Usage: trustflow monitor <pid> [--interval 30s] [--out monitor.csv] [--max-size 10MB]
                         [--metrics-url URL] [--count N]

Samples process <pid> (Linux /proc) into CSV rows until it exits, SIGINT, or --count rows.

Options:
  --interval D       time between rows: 500ms, 30s, 5m (default 30s)
  --out FILE         CSV file (default: standard output); the header is written once per file
  --max-size SIZE    rotate FILE to FILE.1 (FILE.1 to FILE.2 ... up to 5) past this size:
                     512KB, 10MB, 1GB (default 10MB)
  --metrics-url URL  the process's Prometheus endpoint (e.g. http://127.0.0.1:9464/metrics):
                     fills async_resources, heap_used_mb, heap_total_mb,
                     active_streams and service_cache
  --count N          stop after N rows
  -h, --help         this help

Columns: ${MONITOR_COLUMNS.join(',')}
`;

const MB = 1024 * 1024;
const KEEP_ROTATED = 5;
const TICKS_PER_SECOND = 100;

class UsageError extends Error {}

/** `500ms`, `30s`, `5m`, `1h` or plain milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match)
    throw new UsageError(`${flag} must be a duration like 500ms, 30s or 5m, got "${text}"`);
  const n = Number(match[1]);
  const unit = match[2] ?? 'ms';
  const ms = n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
  if (ms < 10) throw new UsageError(`${flag} must be at least 10ms, got "${text}"`);
  return ms;
}

/** `512KB`, `10MB`, `1GB` or plain bytes. */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`${flag} must be a size like 512KB or 10MB, got "${text}"`);
  const unit = (match[2] ?? 'B').toUpperCase();
  const bytes = Math.floor(Number(match[1]) * { B: 1, KB: 1024, MB: MB, GB: 1024 * MB }[unit]!);
  if (bytes < 1024) throw new UsageError(`${flag} must be at least 1KB, got "${text}"`);
  return bytes;
}

/** RFC 4180 field: quoted when it holds a comma, a quote or a line break. */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function csvLine(values: readonly string[]): string {
  return `${values.map(csvField).join(',')}\n`;
}

function fixed(n: number | null | undefined, digits: number): string {
  return n === null || n === undefined || !Number.isFinite(n) ? '' : n.toFixed(digits);
}

interface ProcFigures {
  ticks: number;
  startTicks: number;
  threads: number;
  vszBytes: number;
  rssBytes: number;
  fds: number;
  tcpEstablished: number | null;
}

function readProc(pid: number): ProcFigures {
  let statText: string;
  try {
    statText = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    throw new Error(`process ${pid} not found`);
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after it.
  const fields = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); field N is fields[N - 3].
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const threads = Number(fields[17]);
  const startTicks = Number(fields[19]);
  const vszBytes = Number(fields[20]);
  const rssPages = Number(fields[21]);
  const sockets = new Set<string>();
  let fds = 0;
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue;
    }
    fds++;
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode) sockets.add(inode);
  }
  // The tables list every socket of the network namespace (on a busy host, 100 000 lines of
  // TIME_WAIT): read them only when the process has sockets, and split only ESTABLISHED lines.
  let tcpEstablished: number | null = 0;
  let anyTable = sockets.size === 0;
  for (const table of sockets.size === 0 ? [] : ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    anyTable = true;
    let start = text.indexOf('\n') + 1;
    while (start > 0 && start < text.length) {
      let end = text.indexOf('\n', start);
      if (end === -1) end = text.length;
      const line = text.slice(start, end);
      start = end + 1;
      // the state field (` 01 ` is ESTABLISHED) is the only one printed as two digits alone
      if (!line.includes(' 01 ')) continue;
      const cols = line.trim().split(/\s+/, 10);
      if (cols.length >= 10 && cols[3] === '01' && sockets.has(cols[9]!)) tcpEstablished++;
    }
  }
  if (!anyTable) tcpEstablished = null;
  return {
    ticks: utime + stime,
    startTicks,
    threads,
    vszBytes,
    rssBytes: rssPages * 4096,
    fds,
    tcpEstablished,
  };
}

function memTotalBytes(): number | null {
  try {
    const match = /^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function uptimeSeconds(): number | null {
  try {
    return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (comments skipped; timestamps ignored). */
export function parsePrometheus(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    const labelText = match[3];
    if (labelText) {
      for (const m of labelText.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      }
    }
    const value = Number(match[4]);
    if (Number.isFinite(value)) out.push({ name: match[1]!, labels, value });
  }
  return out;
}

function sum(samples: PromSample[], test: (s: PromSample) => boolean): number | null {
  let total = 0;
  let found = false;
  for (const s of samples) {
    if (test(s)) {
      total += s.value;
      found = true;
    }
  }
  return found ? total : null;
}

const KIND_LABEL = 'trustflow_resource_kind';

/** The endpoint-derived columns. */
export function endpointFigures(samples: PromSample[]) {
  const active = (s: PromSample) => s.name === 'trustflow_resource_active';
  const kind = (k: string) => (s: PromSample) => active(s) && s.labels[KIND_LABEL] === k;
  // A tracker lists every kind it has seen; with its metric present, a stream kind it has not
  // seen yet has no open streams (0), while without the metric the figure is unknown (empty).
  const tracked = samples.some(active);
  const streams =
    sum(samples, kind('libp2p.stream')) ??
    sum(samples, kind('trustflow_node.exchange')) ??
    (tracked ? 0 : null);
  return {
    asyncResources: sum(samples, active),
    // The OTel Prometheus exporter writes these without a unit suffix; others add `_bytes`.
    heapUsed: sum(samples, (s) => /^v8js_memory_heap_used(_bytes)?$/.test(s.name)),
    heapTotal: sum(samples, (s) => /^v8js_memory_heap_space_size(_bytes)?$/.test(s.name)),
    activeStreams: streams,
    serviceCache: sum(samples, (s) => s.name === 'trustflow_node_offer_cache_size'),
  };
}

async function scrape(url: string, timeoutMs: number): Promise<PromSample[]> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`metrics endpoint answered ${response.status}`);
  return parsePrometheus(await response.text());
}

export interface Sampler {
  sample(): Promise<MonitorRow>;
}

/** Takes rows for `pid`; CPU % is over the last interval (the first row: since the process started). */
export function createSampler(pid: number, metricsUrl?: string, scrapeTimeoutMs = 2_000): Sampler {
  let last: { ticks: number; at: number } | undefined;
  const memTotal = memTotalBytes();
  return {
    async sample() {
      const row = Object.fromEntries(MONITOR_COLUMNS.map((c) => [c, ''])) as MonitorRow;
      row.timestamp = new Date().toISOString();
      row.pid = String(pid);
      const errors: string[] = [];
      try {
        const p = readProc(pid);
        const now = performance.now();
        let cpu: number | null = null;
        if (last) {
          const seconds = (now - last.at) / 1000;
          if (seconds > 0) cpu = ((p.ticks - last.ticks) / TICKS_PER_SECOND / seconds) * 100;
        } else {
          const up = uptimeSeconds();
          const alive = up === null ? 0 : up - p.startTicks / TICKS_PER_SECOND;
          if (alive > 0) cpu = (p.ticks / TICKS_PER_SECOND / alive) * 100;
        }
        last = { ticks: p.ticks, at: now };
        row.cpu_percent = fixed(cpu, 1);
        row.mem_percent = memTotal ? fixed((p.rssBytes / memTotal) * 100, 2) : '';
        row.rss_mb = fixed(p.rssBytes / MB, 2);
        row.vsz_mb = fixed(p.vszBytes / MB, 2);
        row.threads = String(p.threads);
        row.file_descriptors = String(p.fds);
        row.tcp_connections = p.tcpEstablished === null ? '' : String(p.tcpEstablished);
      } catch (error) {
        errors.push(`proc: ${(error as Error).message}`);
      }
      if (metricsUrl) {
        try {
          const f = endpointFigures(await scrape(metricsUrl, scrapeTimeoutMs));
          row.async_resources = f.asyncResources === null ? '' : String(f.asyncResources);
          row.heap_used_mb = f.heapUsed === null ? '' : fixed(f.heapUsed / MB, 2);
          row.heap_total_mb = f.heapTotal === null ? '' : fixed(f.heapTotal / MB, 2);
          row.active_streams = f.activeStreams === null ? '' : String(f.activeStreams);
          row.service_cache = f.serviceCache === null ? '' : String(f.serviceCache);
        } catch (error) {
          const e = error as Error & { cause?: { code?: string } };
          errors.push(
            e.name === 'TimeoutError'
              ? `metrics: no answer within ${scrapeTimeoutMs} ms`
              : `metrics: ${e.cause?.code ?? e.message}`,
          );
        }
      }
      row.error = errors.join('; ');
      return row;
    },
  };
}

/** Appends rows to a CSV file with the header once per file and rotation past `maxBytes`. */
export function createCsvWriter(path: string, maxBytes: number) {
  let size: number | undefined;
  const header = csvLine(MONITOR_COLUMNS);
  const rotate = async () => {
    for (let i = KEEP_ROTATED - 1; i >= 1; i--) {
      await rename(`${path}.${i}`, `${path}.${i + 1}`).catch(() => {});
    }
    await rename(path, `${path}.1`);
    size = 0;
  };
  return {
    async write(row: MonitorRow): Promise<void> {
      const line = csvLine(MONITOR_COLUMNS.map((c) => row[c]));
      if (size === undefined) {
        try {
          size = (await stat(path)).size;
        } catch {
          size = 0;
        }
      }
      if (size > 0 && size + line.length > maxBytes) await rotate();
      const text = size === 0 ? header + line : line;
      await appendFile(path, text);
      size += Buffer.byteLength(text);
    },
  };
}

export async function runMonitor(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        interval: { type: 'string', default: '30s' },
        out: { type: 'string' },
        'max-size': { type: 'string', default: '10MB' },
        'metrics-url': { type: 'string' },
        count: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('monitor needs exactly one <pid>');
    const pid = Number(positionals[0]);
    if (!Number.isSafeInteger(pid) || pid <= 0) {
      throw new UsageError(`<pid> must be a positive integer, got "${positionals[0]}"`);
    }
    const interval = parseDuration(values.interval as string, '--interval');
    const maxSize = parseSize(values['max-size'] as string, '--max-size');
    const count = values.count === undefined ? Number.POSITIVE_INFINITY : Number(values.count);
    if (!(count > 0) || (Number.isFinite(count) && !Number.isInteger(count))) {
      throw new UsageError(`--count must be a positive integer, got "${values.count}"`);
    }
    const metricsUrl = values['metrics-url'] as string | undefined;
    if (metricsUrl !== undefined && !/^https?:\/\//.test(metricsUrl)) {
      throw new UsageError(`--metrics-url must be an http(s) URL, got "${metricsUrl}"`);
    }
    return await monitorLoop(pid, {
      interval,
      maxSize,
      count,
      metricsUrl,
      out: values.out as string | undefined,
    });
  } catch (error) {
    const e = error as Error & { code?: string };
    if (error instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(
        `trustflow monitor: ${e.message}\nRun trustflow monitor --help for usage.\n`,
      );
      return 2;
    }
    process.stderr.write(`trustflow monitor: ${e.message}\n`);
    return 1;
  }
}

async function monitorLoop(
  pid: number,
  o: { interval: number; maxSize: number; count: number; metricsUrl?: string; out?: string },
): Promise<number> {
  try {
    readProc(pid);
  } catch (error) {
    process.stderr.write(`trustflow monitor: ${(error as Error).message}\n`);
    return 1;
  }
  const sampler = createSampler(pid, o.metricsUrl, Math.min(5_000, Math.max(1_000, o.interval)));
  const writer = o.out ? createCsvWriter(o.out, o.maxSize) : undefined;
  if (!writer) process.stdout.write(csvLine(MONITOR_COLUMNS));
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let rows = 0;
  let exitCode = 0;
  try {
    let next = performance.now();
    while (rows < o.count && !stop.signal.aborted) {
      const row = await sampler.sample();
      if (writer) await writer.write(row);
      else process.stdout.write(csvLine(MONITOR_COLUMNS.map((c) => row[c])));
      rows++;
      if (row.error.includes(`process ${pid} not found`)) {
        process.stderr.write(`trustflow monitor: process ${pid} exited\n`);
        exitCode = 1;
        break;
      }
      if (rows >= o.count) break;
      next += o.interval;
      const wait = Math.max(0, next - performance.now());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          stop.signal.removeEventListener('abort', done);
          resolve();
        }
        stop.signal.addEventListener('abort', done, { once: true });
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return exitCode;
}
