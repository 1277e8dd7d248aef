import type { ResourceTracker, ResourceTrackerOptions } from '../types.js';
import { Tracker } from './tracker.js';

// Registered globally, so that two installed copies of a Trustflow package agree on it.
const KEY = Symbol.for('@trustflow/default-tracker');
type Holder = { [KEY]?: ResourceTracker };

/**
 * The process-wide tracker shared by the Trustflow packages that were not given one (a buffer
 * pool, `libp2pMetrics()`, the leak assertions, the preload). Created on first use with
 * `options`; later calls return the same tracker until it is shut down.
 */
export function defaultTracker(options?: ResourceTrackerOptions): ResourceTracker {
  const holder = globalThis as Holder;
  let tracker = holder[KEY];
  if (tracker === undefined || tracker.isShutdown) {
    tracker = new Tracker(options);
    holder[KEY] = tracker;
  }
  return tracker;
}

/**
 * Makes `tracker` the process-wide default (the preload does, so that pools and libp2p nodes
 * created later report to it). Returns a function that removes it again if it is still the default.
 */
export function setDefaultTracker(tracker: ResourceTracker): () => void {
  const holder = globalThis as Holder;
  holder[KEY] = tracker;
  return () => {
    if (holder[KEY] === tracker) delete holder[KEY];
  };
}
