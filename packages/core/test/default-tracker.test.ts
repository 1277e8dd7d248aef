import { expect, it } from 'vitest';
import { createResourceTracker, defaultTracker, setDefaultTracker } from '../src/index.js';

it('is one tracker per process, made again after shutdown, and can be replaced', () => {
  const first = defaultTracker({ stacks: 'off' });
  expect(defaultTracker()).toBe(first);
  expect(first.stackMode).toBe('off');
  first.shutdown();
  const second = defaultTracker();
  expect(second).not.toBe(first);
  expect(second.stackMode).toBe('sampled');

  const mine = createResourceTracker({ scanIntervalMs: 0 });
  const restore = setDefaultTracker(mine);
  expect(defaultTracker()).toBe(mine);
  restore();
  expect(defaultTracker()).not.toBe(mine);
  mine.shutdown();
  defaultTracker().shutdown();
});
