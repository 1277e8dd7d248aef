import { createTracingHarness } from '@trustflow/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { createResourceTracker, type ResourceTracker } from '../src/index.js';

const here = new URL(import.meta.url).pathname;
const trackers: ResourceTracker[] = [];
function tracker(options: Parameters<typeof createResourceTracker>[0] = {}): ResourceTracker {
  const t = createResourceTracker({ scanIntervalMs: 0, ...options });
  trackers.push(t);
  return t;
}
afterEach(() => {
  for (const t of trackers.splice(0)) t.shutdown();
});

async function lineOf(marker: string): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const lines = (await readFile(here, 'utf8')).split('\n');
  const index = lines.findIndex((l) => l.includes(marker) && !l.includes('lineOf('));
  if (index < 0) throw new Error(`marker ${marker} not found`);
  return index + 1;
}

describe('captureSite', () => {
  it('attributes a resource tracked later (in a callback) to the line that captured the site', async () => {
    const t = tracker({ stacks: 'all' });
    const site = t.captureSite('test.later'); // MARK:capture
    expect(site.sampled).toBe(true);
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        t.track(7, { kind: 'test.later', site });
        resolve();
      }),
    );
    const [group] = t.report({ includeOpen: true }).leaks;
    expect(group?.kind).toBe('test.later');
    expect(group?.site).toMatch(new RegExp(`${here}:${await lineOf('MARK:capture')}:\\d+$`));
  });

  it('is shared by several resources, and sampled like track()', async () => {
    const t = tracker({ stacks: 'sampled', stackSampleFirst: 1, stackSampleEvery: 1000 });
    const first = t.captureSite('test.shared');
    t.captureSite('test.shared'); // the first of the 1-in-1000 sample
    const second = t.captureSite('test.shared');
    expect(first.sampled).toBe(true);
    expect(second.sampled).toBe(false);
    t.track(1, { kind: 'test.shared', site: first });
    t.track(2, { kind: 'test.shared', site: first });
    t.track(3, { kind: 'test.shared', site: second });
    const leaks = t.report({ includeOpen: true }).leaks;
    const withSite = leaks.find((l) => l.site !== null);
    expect(withSite?.count).toBe(2);
    expect(leaks.find((l) => l.site === null)?.count).toBe(1);
    // three are open now, more than ever before: the next one is sampled as a new high
    expect(t.captureSite('test.shared').sampled).toBe(true);
    // and one that does not raise the high is back to the 1-in-M sample
    expect(t.captureSite('test.shared').sampled).toBe(false);
  });

  it('captures nothing when stacks are off or the tracker is shut down', () => {
    expect(tracker({ stacks: 'off' }).captureSite('k').sampled).toBe(false);
    const t = tracker();
    t.shutdown();
    expect(t.captureSite('k').sampled).toBe(false);
  });
});

describe('handle.recording', () => {
  it('is true only while a lifetime span records', async () => {
    const tracing = createTracingHarness();
    try {
      const withSdk = tracker({ tracer: tracing.tracer });
      const handle = withSdk.track({}, { kind: 'test.rec' });
      expect(handle.recording).toBe(true);
      handle.release();
      expect(handle.recording).toBe(false);
      expect(withSdk.track({}, { kind: 'test.rec', span: false }).recording).toBe(false);
      // the global API with no SDK registered: no span records
      expect(tracker().track({}, { kind: 'test.rec' }).recording).toBe(false);
      expect(tracker({ spans: false }).track({}, { kind: 'test.rec' }).recording).toBe(false);
    } finally {
      await tracing.shutdown();
    }
  });
});
