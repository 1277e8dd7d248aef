import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { FdType } from '../types.js';

/** One open descriptor of this process. */
export interface OpenFd {
  fd: number;
  type: FdType;
  target: string;
}

const FD_DIR = '/proc/self/fd';

/** True when this system has /proc/self/fd (Linux). */
export function hasProcFd(): boolean {
  try {
    readdirSync(FD_DIR);
    return true;
  } catch {
    return false;
  }
}

export function classify(target: string): FdType {
  if (target.startsWith('/')) return 'file';
  if (target.startsWith('socket:')) return 'socket';
  if (target.startsWith('pipe:')) return 'pipe';
  if (target.startsWith('anon_inode:')) return 'anon_inode';
  return 'other';
}

/**
 * Lists the open descriptors from /proc/self/fd, stdio (0-2) excluded. The listing holds a
 * descriptor of its own while it runs; it is closed by the time the links are read, so reading
 * its link fails and it is skipped like any descriptor closed meanwhile. Returns null where
 * /proc/self/fd cannot be read.
 */
export function listOpenFds(): OpenFd[] | null {
  let names: string[];
  try {
    names = readdirSync(FD_DIR);
  } catch {
    return null;
  }
  const out: OpenFd[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    let target: string;
    try {
      target = readlinkSync(`${FD_DIR}/${name}`);
    } catch {
      continue;
    }
    out.push({ fd, type: classify(target), target });
  }
  return out;
}

/** True when descriptor `fd` is open (its /proc/self/fd link can be read; nothing is opened). */
export function isOpenFd(fd: number): boolean {
  try {
    readlinkSync(`${FD_DIR}/${fd}`);
    return true;
  } catch {
    return false;
  }
}

const POS = /^pos:\s*(\d+)/;

/**
 * The file offset of a descriptor, from /proc/self/fdinfo (read with the utf8 fast path, which
 * opens no descriptor through the fs module). -1 when it cannot be read.
 */
export function fdPosition(fd: number): number {
  if (!(fd >= 0)) return -1;
  try {
    const match = POS.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return match ? Number(match[1]) : -1;
  } catch {
    return -1;
  }
}
