import { trace } from '@opentelemetry/api';
import { createTracingHarness } from '@trustflow/test-utils';
import { afterEach, expect, it } from 'vitest';
import { createResourceTracker } from '../src/index.js';

afterEach(() => {
  trace.disable();
});

it('starts no span without an SDK, and spans once one is registered later', async () => {
  const tracker = createResourceTracker({ scanIntervalMs: 0 });
  const before = tracker.track({}, { kind: 'test.before-sdk' });
  expect(before.recording).toBe(false);
  before.release();

  const tracing = createTracingHarness();
  trace.setGlobalTracerProvider(tracing.provider);
  const after = tracker.track({}, { kind: 'test.after-sdk' });
  expect(after.recording).toBe(true);
  after.release();
  expect(tracing.spans().map((s) => s.name)).toEqual(['test.after-sdk']);
  tracker.shutdown();
  await tracing.shutdown();
});
