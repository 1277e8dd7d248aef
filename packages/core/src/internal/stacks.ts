import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Stack capture: the structured stack is taken on the hot path (cheap), formatted later in a batch
 * (off the hot path), cut to user frames and grouped by fingerprint.
 *
 * The raw structured stack of V8 holds the receivers and functions of each frame, which could keep
 * a tracked resource alive. So raw stacks are formatted within one macrotask at most, which turns
 * them into strings and drops those references.
 */

export interface CapturedStack {
  /** Set by Error.captureStackTrace; reading it formats the frames. */
  stack?: string;
  frames?: string[];
  site?: string | null;
  fingerprint?: string;
}

const INTERNAL_FRAGMENTS = ['/node_modules/@trustflow/', '\\node_modules\\@trustflow\\'];
const NODE_MODULES = '/node_modules/';
const NODE_MODULES_WIN = '\\node_modules\\';
const LOCATION = /\(?((?:file:\/\/|node:|\/|[A-Za-z]:\\)[^()]*?):(\d+):(\d+)\)?$/;

export class StackFormatter {
  private pending: CapturedStack[] = [];
  private scheduled = false;
  private readonly internal: string[];
  readonly maxFrames: number;

  constructor(maxFrames: number, internalPaths: readonly string[]) {
    this.maxFrames = maxFrames;
    this.internal = [...INTERNAL_FRAGMENTS, ...internalPaths];
  }

  addInternalPaths(paths: readonly string[]): void {
    for (const p of paths) if (p && !this.internal.includes(p)) this.internal.push(p);
  }

  /** Captures the current stack above `above` (that function and its callers' frames are cut). */
  capture(above: Function): CapturedStack {
    const holder: CapturedStack = {};
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = this.maxFrames + 12;
    Error.captureStackTrace(holder, above);
    Error.stackTraceLimit = limit;
    this.pending.push(holder);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush()).unref();
    }
    return holder;
  }

  /** Formats every pending stack now. */
  flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    for (const holder of batch) this.resolve(holder);
  }

  /** Formats one stack if it is not yet (idempotent). */
  resolve(holder: CapturedStack): void {
    if (holder.frames) return;
    let text: string | undefined;
    try {
      text = holder.stack;
    } catch {
      text = undefined;
    }
    holder.stack = undefined;
    const frames: string[] = [];
    // The site is the first frame of the application's own code; a dependency's frame (under
    // node_modules) only when no frame of the application's is on the stack.
    let site: string | null = null;
    let dependencySite: string | null = null;
    for (const raw of (text ?? '').split('\n')) {
      const line = raw.trim();
      if (!line.startsWith('at ')) continue;
      const match = LOCATION.exec(line);
      if (!match) continue;
      const location = match[1] ?? '';
      if (location.startsWith('node:')) continue;
      const file = location.startsWith('file://') ? toPath(location) : location;
      if (this.isInternal(file)) continue;
      const frame = file === location ? line : line.replace(location, file);
      if (site === null) {
        const where = `${file}:${match[2]}:${match[3]}`;
        if (!file.includes(NODE_MODULES) && !file.includes(NODE_MODULES_WIN)) site = where;
        else dependencySite ??= where;
      }
      frames.push(frame);
      if (frames.length >= this.maxFrames) break;
    }
    holder.frames = frames;
    holder.site = site ?? dependencySite;
    holder.fingerprint = frames.join('\n');
  }

  private isInternal(file: string): boolean {
    for (const fragment of this.internal) if (file.includes(fragment)) return true;
    return false;
  }
}

function toPath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch {
    return url;
  }
}

/**
 * The src/ and dist/ folders of the package holding the module at `moduleUrl`: its code, without
 * its test/ folder. Both, because with source maps a frame of dist/ is shown at its source in src/.
 */
export function codeFolders(moduleUrl: string): string[] {
  const path = toPath(moduleUrl);
  const at = Math.max(path.lastIndexOf(`${sep}src${sep}`), path.lastIndexOf(`${sep}dist${sep}`));
  if (at < 0) return [path.slice(0, path.lastIndexOf(sep) + 1)];
  const root = path.slice(0, at + 1);
  return [`${root}src${sep}`, `${root}dist${sep}`];
}
