import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import type { ProcessSample } from '../types.js';

const TCP_ESTABLISHED = '01';
const TCP_LISTEN = '0A';

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** `Name:  value kB` fields of /proc/self/status. */
function statusField(status: string, name: string): number | null {
  const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status);
  return match ? Number(match[1]) : null;
}

function fdType(target: string): string {
  if (target.startsWith('socket:')) return 'socket';
  if (target.startsWith('pipe:')) return 'pipe';
  if (target.startsWith('anon_inode:')) return 'anon_inode';
  if (target.startsWith('/dev/')) return 'device';
  if (target.startsWith('/')) return 'file';
  return 'other';
}

interface Fds {
  total: number;
  byType: Record<string, number>;
  sockets: Set<string>;
}

function readFds(): Fds | null {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return null;
  }
  const byType: Record<string, number> = {};
  const sockets = new Set<string>();
  let total = 0;
  for (const name of names) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      // The descriptor of the listing itself is gone by now; so may be one closed meanwhile.
      continue;
    }
    total++;
    const type = fdType(target);
    byType[type] = (byType[type] ?? 0) + 1;
    if (type === 'socket') {
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) sockets.add(inode);
    }
  }
  return { total, byType, sockets };
}

/** Counts this process's sockets in /proc/self/net/tcp{,6} by state, matched by inode. */
function countTcp(sockets: Set<string>): { established: number; listening: number } | null {
  const tables = [readText('/proc/self/net/tcp'), readText('/proc/self/net/tcp6')];
  if (tables[0] === null && tables[1] === null) return null;
  let established = 0;
  let listening = 0;
  for (const table of tables) {
    if (table === null) continue;
    const lines = table.split('\n');
    // Line 0 is the header.
    for (let i = 1; i < lines.length; i++) {
      const fields = lines[i]!.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const state = fields[3];
      const inode = fields[9]!;
      if (inode === '0' || !sockets.has(inode)) continue;
      if (state === TCP_ESTABLISHED) established++;
      else if (state === TCP_LISTEN) listening++;
    }
  }
  return { established, listening };
}

/**
 * Samples this process from /proc (Linux): RSS, VSZ, threads, descriptors by type and TCP
 * connections. A TCP connection counts when its socket inode is one of this process's
 * descriptors (the tables list the whole network namespace) and it is ESTABLISHED; listening
 * sockets are counted apart. Elsewhere only RSS and heap are known and the rest is null.
 */
export function sampleProcess(): ProcessSample {
  const heapUsedBytes = getHeapStatistics().used_heap_size;
  const status = readText('/proc/self/status');
  if (status === null) {
    return {
      pid: process.pid,
      source: 'fallback',
      rssBytes: process.memoryUsage.rss(),
      vszBytes: null,
      threads: null,
      heapUsedBytes,
      fds: null,
      tcpEstablished: null,
      tcpListening: null,
    };
  }
  const rssKb = statusField(status, 'VmRSS');
  const vszKb = statusField(status, 'VmSize');
  const fds = readFds();
  const tcp = fds ? countTcp(fds.sockets) : null;
  return {
    pid: process.pid,
    source: 'proc',
    rssBytes: rssKb !== null ? rssKb * 1024 : process.memoryUsage.rss(),
    vszBytes: vszKb !== null ? vszKb * 1024 : null,
    threads: statusField(status, 'Threads'),
    heapUsedBytes,
    fds: fds ? { total: fds.total, byType: fds.byType } : null,
    tcpEstablished: tcp?.established ?? null,
    tcpListening: tcp?.listening ?? null,
  };
}
