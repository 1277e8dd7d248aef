import type {
  Attributes,
  LeakEvent,
  LeakGroup,
  OpenResource,
  ResourceTracker,
} from '@trustflow/core';
import type { LeakCheckOptions, Pattern } from '../types.js';
import { capturesAllStacks, defaultTracker, prepare } from './tracker.js';

/** An assertion error listing the leak groups. */
export class LeakError extends Error {
  readonly leaks: LeakGroup[];
  constructor(message: string, leaks: LeakGroup[]) {
    super(message);
    this.name = 'LeakError';
    this.leaks = leaks;
  }
}

interface Resolved {
  tracker: ResourceTracker;
  ignoreKinds: Pattern[];
  ignoreSites: Pattern[];
  timeoutMs: number;
  ignoreUnattributed: boolean;
  ignoreUnrefTimers: boolean;
}

/** A started check: what existed before is not this check's business. */
export interface Mark {
  readonly options: Resolved;
  readonly since: number;
  skipped: boolean;
}

/** Resources already reported (by a check that threw, or by `toLeak`), per tracker. */
const acknowledged = new WeakMap<ResourceTracker, Set<number>>();

/**
 * Objects collected without release (`gc-unreleased`), as the tracker announces them: cheaper
 * than a full report per check. The most recent 1000 per tracker are kept.
 */
const collectedEvents = new WeakMap<ResourceTracker, LeakEvent[]>();
const MAX_COLLECTED = 1000;

function watchCollected(tracker: ResourceTracker): void {
  if (collectedEvents.has(tracker)) return;
  const events: LeakEvent[] = [];
  collectedEvents.set(tracker, events);
  tracker.onLeak((event) => {
    if (event.reason !== 'gc-unreleased') return;
    events.push(event);
    if (events.length > MAX_COLLECTED) events.splice(0, events.length - MAX_COLLECTED);
  });
}

/**
 * `gc-unreleased` leaks of resources created since the mark, grouped like a report's. They are
 * taken off the list: reported once.
 */
function collectedLeaks(mark: Mark): LeakGroup[] {
  const o = mark.options;
  const events = collectedEvents.get(o.tracker) ?? [];
  const groups = new Map<string, LeakGroup>();
  const rest: LeakEvent[] = [];
  for (const e of events) {
    if (e.id <= mark.since || !wanted(o, e.kind, e.site, e.attributes)) {
      rest.push(e);
      continue;
    }
    const key = `${e.kind}\n${e.stack.join('\n')}`;
    const group = groups.get(key);
    if (group) {
      group.count++;
      group.oldestAgeMs = Math.max(group.oldestAgeMs, e.ageMs);
      continue;
    }
    groups.set(key, {
      kind: e.kind,
      reason: 'gc-unreleased',
      count: 1,
      site: e.site,
      stack: e.stack,
      oldestAgeMs: e.ageMs,
      sample: { attributes: e.attributes },
    });
  }
  events.splice(0, events.length, ...rest);
  return [...groups.values()];
}

function patterns(value: unknown, name: string): Pattern[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((p) => typeof p === 'string' || p instanceof RegExp)) {
    throw new TypeError(
      `@trustflow/leak-test: option ${name} must be an array of strings or RegExps`,
    );
  }
  return value;
}

export function resolveOptions(options: LeakCheckOptions = {}): Resolved {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('@trustflow/leak-test: options must be an object');
  }
  let tracker = options.tracker;
  if (tracker !== undefined) {
    if (typeof tracker?.snapshot !== 'function' || typeof tracker.report !== 'function') {
      throw new TypeError('@trustflow/leak-test: option tracker must be a resource tracker');
    }
    if (tracker.isShutdown) {
      throw new TypeError('@trustflow/leak-test: option tracker is shut down');
    }
    prepare(tracker);
  } else {
    tracker = defaultTracker();
  }
  const timeoutMs = options.timeoutMs ?? 1000;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new TypeError(
      `@trustflow/leak-test: option timeoutMs must be a non-negative number, got ${String(timeoutMs)}`,
    );
  }
  return {
    tracker,
    ignoreKinds: patterns(options.ignoreKinds, 'ignoreKinds'),
    ignoreSites: patterns(options.ignoreSites, 'ignoreSites'),
    timeoutMs,
    ignoreUnattributed: options.ignoreUnattributed ?? capturesAllStacks(tracker),
    ignoreUnrefTimers: options.ignoreUnrefTimers ?? true,
  };
}

export function startCheck(options: Resolved): Mark {
  watchCollected(options.tracker);
  return { options, since: options.tracker.snapshot().lastId, skipped: false };
}

function matches(value: string, list: Pattern[], exact: boolean): boolean {
  for (const p of list) {
    if (typeof p === 'string' ? (exact ? value === p : value.includes(p)) : p.test(value)) {
      return true;
    }
  }
  return false;
}

function wanted(o: Resolved, kind: string, site: string | null, attributes: Attributes): boolean {
  if (matches(kind, o.ignoreKinds, true)) return false;
  if (o.ignoreUnrefTimers && kind === 'timer' && attributes.hasRef === false) return false;
  if (site === null) return !o.ignoreUnattributed;
  return !matches(site, o.ignoreSites, false);
}

/** Open resources created since the mark, grouped by kind and creation stack. */
function openLeaks(
  mark: Mark,
  seen: Set<number> | undefined,
  own: Set<number>,
): { groups: LeakGroup[]; ids: number[]; lastId: number } {
  const o = mark.options;
  const groups = new Map<string, LeakGroup>();
  const ids: number[] = [];
  const snapshot = o.tracker.snapshot();
  const resources: OpenResource[] = snapshot.resources;
  for (const r of resources) {
    if (
      r.id <= mark.since ||
      seen?.has(r.id) ||
      own.has(r.id) ||
      !wanted(o, r.kind, r.site, r.attributes)
    ) {
      continue;
    }
    ids.push(r.id);
    const key = `${r.kind}\n${r.stack.join('\n')}`;
    const group = groups.get(key);
    if (group) {
      group.count++;
      group.oldestAgeMs = Math.max(group.oldestAgeMs, r.ageMs);
      continue;
    }
    groups.set(key, {
      kind: r.kind,
      reason: 'open-at-exit',
      count: 1,
      site: r.site,
      stack: r.stack,
      oldestAgeMs: r.ageMs,
      sample: { attributes: r.attributes },
    });
  }
  return { groups: [...groups.values()], ids, lastId: snapshot.lastId };
}

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Waits with a timer of our own. A tracker that tracks timers tracks this one too: its ids
 * (between the last id seen before and the one after creating it) are remembered, so the check
 * never reports itself.
 */
function sleep(ms: number, tracker: ResourceTracker, lastId: number, own: Set<number>) {
  return new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
    const after = tracker.snapshot().lastId;
    for (let id = lastId + 1; id <= after; id++) own.add(id);
  });
}

/**
 * What is still open since the mark, after giving asynchronous closes a chance: first a few turns
 * of the event loop (close callbacks and async_hooks destroy callbacks run there), then short
 * growing waits, up to `timeoutMs`. Leaks found are acknowledged, so no later check reports
 * them again. Objects collected without being closed (`gc-unreleased`) count too.
 */
export async function findLeaks(mark: Mark): Promise<LeakGroup[]> {
  const o = mark.options;
  let seen = acknowledged.get(o.tracker);
  const deadline = performance.now() + o.timeoutMs;
  const own = new Set<number>();
  let found = openLeaks(mark, seen, own);
  for (let round = 0; found.groups.length > 0 && performance.now() < deadline; round++) {
    if (round < 10) {
      await immediate();
    } else {
      const ms = Math.min(2 ** (round - 10), 50, Math.max(1, deadline - performance.now()));
      await sleep(ms, o.tracker, found.lastId, own);
    }
    found = openLeaks(mark, seen, own);
  }
  const leaks = [...found.groups, ...collectedLeaks(mark)].sort(
    (a, b) => b.count - a.count || b.oldestAgeMs - a.oldestAgeMs,
  );
  if (found.ids.length > 0) {
    if (!seen) {
      seen = new Set();
      acknowledged.set(o.tracker, seen);
    }
    for (const id of found.ids) seen.add(id);
    // Forget ids that are closed by now: the set only holds what is still open.
    if (seen.size > 1024) {
      const live = new Set(o.tracker.snapshot().resources.map((r) => r.id));
      for (const id of seen) if (!live.has(id)) seen.delete(id);
    }
  }
  return leaks;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `N resources in M groups:` then each group with its site and a few more frames. */
export function describeLeaks(leaks: LeakGroup[]): string {
  const total = leaks.reduce((n, l) => n + l.count, 0);
  const lines = [`${plural(total, 'resource')} in ${plural(leaks.length, 'group')}:`];
  for (const leak of leaks) {
    const attributes = Object.entries(leak.sample.attributes)
      .slice(0, 6)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    const reason = leak.reason === 'open-at-exit' ? 'still open' : leak.reason;
    lines.push(
      `  ${leak.count} x ${leak.kind} (${reason})${attributes ? ` ${attributes}` : ''}`,
      `    at ${leak.site ?? '(no user frame in the creation stack)'}`,
    );
    for (const frame of leak.stack.slice(1, 5)) lines.push(`      ${frame}`);
  }
  return lines.join('\n');
}
