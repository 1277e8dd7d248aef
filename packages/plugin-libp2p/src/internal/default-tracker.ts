import { createResourceTracker, type ResourceTracker } from '@trustflow/core';

// One default tracker per process, shared by every Trustflow package that needs one and was not
// given one (the key is registered globally so that two copies of a package agree on it).
const KEY = Symbol.for('@trustflow/default-tracker');

export function defaultTracker(): ResourceTracker {
  const holder = globalThis as { [KEY]?: ResourceTracker };
  let tracker = holder[KEY];
  if (tracker === undefined || tracker.isShutdown) {
    tracker = createResourceTracker();
    holder[KEY] = tracker;
  }
  return tracker;
}
