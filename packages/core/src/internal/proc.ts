import { readdirSync } from 'node:fs';

/** Open descriptors of this process from /proc/self/fd (Linux), or null where there is none. */
export function openFdCount(): number | null {
  try {
    // the listing itself holds one descriptor while it runs
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return null;
  }
}

export function processFigures(): {
  rssBytes: number;
  heapUsedBytes: number;
  openFds: number | null;
} {
  const memory = process.memoryUsage();
  return { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, openFds: openFdCount() };
}
