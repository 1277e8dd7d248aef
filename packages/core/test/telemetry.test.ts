import { context, trace } from '@opentelemetry/api';
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics';
import {
  collectGarbage,
  createMetricsHarness,
  createTracingHarness,
  enableContext,
} from '@trustflow/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createResourceTracker,
  type LifetimeProducer,
  lifetimeProducer,
  type ResourceTracker,
} from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(options: Parameters<typeof createResourceTracker>[0] = {}) {
  const metrics = createMetricsHarness();
  const tracing = createTracingHarness();
  const tracker = createResourceTracker({
    scanIntervalMs: 0,
    meter: metrics.meter,
    tracer: tracing.tracer,
    ...options,
  });
  cleanups.push(
    () => tracker.shutdown(),
    () => metrics.shutdown(),
    () => tracing.shutdown(),
  );
  return { metrics, tracing, tracker };
}

function points(metric: { dataPoints: unknown[] } | undefined) {
  return (metric?.dataPoints ?? []) as { attributes: Record<string, unknown>; value: unknown }[];
}

describe('metrics', () => {
  it('exports the resource instruments with exact names, units and attributes', async () => {
    const { metrics, tracker } = setup();
    const attrs = { 'network.transport': 'tcp' };
    const a = tracker.track(
      {},
      { kind: 'net.socket', attributes: attrs, details: { 'network.peer.address': '10.0.0.1' } },
    );
    tracker.track({}, { kind: 'net.socket', attributes: attrs });
    tracker.track(3, { kind: 'fs.fd', details: { 'file.path': '/tmp/secret' } });
    a.release();

    const all = await metrics.collect();
    const byName = new Map(all.map((m) => [m.descriptor.name, m]));
    expect([...byName.keys()].sort()).toEqual([
      'trustflow.instrumentation.errors',
      'trustflow.resource.active',
      'trustflow.resource.closed',
      'trustflow.resource.lifetime',
      'trustflow.resource.oldest_age',
      'trustflow.resource.opened',
      'trustflow.tracker.overflow',
    ]);
    expect(byName.get('trustflow.resource.active')?.descriptor.unit).toBe('{resource}');
    expect(byName.get('trustflow.resource.lifetime')?.descriptor.unit).toBe('s');
    expect(byName.get('trustflow.resource.oldest_age')?.descriptor.unit).toBe('s');

    const active = points(byName.get('trustflow.resource.active'));
    expect(active).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          attributes: { 'trustflow.resource.kind': 'net.socket', 'network.transport': 'tcp' },
          value: 1,
        }),
        expect.objectContaining({ attributes: { 'trustflow.resource.kind': 'fs.fd' }, value: 1 }),
      ]),
    );
    const opened = points(byName.get('trustflow.resource.opened'));
    expect(
      opened.find((p) => p.attributes['trustflow.resource.kind'] === 'net.socket')?.value,
    ).toBe(2);
    const closed = points(byName.get('trustflow.resource.closed'));
    expect(
      closed.find((p) => p.attributes['trustflow.resource.kind'] === 'net.socket')?.value,
    ).toBe(1);
    const lifetime = points(byName.get('trustflow.resource.lifetime'));
    expect(lifetime).toHaveLength(1);
    expect(lifetime[0]?.value).toMatchObject({ count: 1 });

    // No path, address or stack ever reaches a metric attribute.
    for (const metric of all) {
      for (const p of points(metric)) {
        for (const [k, v] of Object.entries(p.attributes)) {
          expect(k).not.toMatch(/path|address|stack|site|peer/);
          expect(String(v)).not.toMatch(/\/tmp|10\.0\.0\.1|\.ts:/);
        }
      }
    }
  });

  it('counts leaks by reason', async () => {
    let now = 0;
    const { metrics, tracker } = setup({ now: () => now, staleAfterMs: 10, idleAfterMs: 10 });
    tracker.track({}, { kind: 'test.stale' });
    now = 20;
    tracker.scan();
    const leaked = points(await metrics.find('trustflow.resource.leaked'));
    expect(leaked).toEqual([
      expect.objectContaining({
        attributes: { 'trustflow.resource.kind': 'test.stale', 'trustflow.leak.reason': 'stale' },
        value: 1,
      }),
    ]);
  });

  it('lifetimeProducer() takes the lifetime histogram off the meter and hands it to the reader', async () => {
    let now = 0;
    let producer: LifetimeProducer | undefined;
    const metrics = createMetricsHarness('test', {
      metricProducers: [{ collect: () => producer!.collect() }],
    });
    const tracker = createResourceTracker({
      scanIntervalMs: 0,
      meter: metrics.meter,
      now: () => now,
    });
    cleanups.push(
      () => tracker.shutdown(),
      () => metrics.shutdown(),
    );
    producer = lifetimeProducer(tracker);
    // nothing released yet: no lifetime metric at all
    expect((await metrics.collect()).map((m) => m.descriptor.name)).not.toContain(
      'trustflow.resource.lifetime',
    );
    const attrs = { 'network.transport': 'tcp' };
    // 0.5 ms, 0.2 s (in (0.1, 0.5]), and 2 days (above every boundary)
    for (const ms of [0.5, 200, 2 * 86_400_000]) {
      const handle = tracker.track({}, { kind: 'net.socket', attributes: attrs });
      now += ms;
      handle.release();
    }
    tracker.track({}, { kind: 'fs.fd' }).release();

    const all = await metrics.collect();
    // exactly one lifetime metric (the producer's; the meter never got the instrument)
    const lifetimes = all.filter((m) => m.descriptor.name === 'trustflow.resource.lifetime');
    expect(lifetimes).toHaveLength(1);
    const metric = lifetimes[0]!;
    expect(metric.descriptor).toMatchObject({
      unit: 's',
      description: 'Time from open to release.',
    });
    expect(metric.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(metric.aggregationTemporality).toBe(AggregationTemporality.CUMULATIVE);
    const byKind = new Map(points(metric).map((p) => [p.attributes['trustflow.resource.kind'], p]));
    expect([...byKind.keys()].sort()).toEqual(['fs.fd', 'net.socket']);
    const socket = byKind.get('net.socket')!;
    expect(socket.attributes).toEqual({
      'trustflow.resource.kind': 'net.socket',
      'network.transport': 'tcp',
    });
    const value = socket.value as {
      buckets: { boundaries: number[]; counts: number[] };
      count: number;
      sum: number;
      min: number;
      max: number;
    };
    const { boundaries } = value.buckets;
    expect(boundaries[0]).toBe(0.001);
    expect(boundaries.at(-1)).toBe(86_400);
    const expected = new Array(boundaries.length + 1).fill(0);
    expected[0] = 1;
    expected[boundaries.indexOf(0.5)] = 1;
    expected[boundaries.length] = 1;
    expect(value.buckets.counts).toEqual(expected);
    expect(value.count).toBe(3);
    expect(value.sum).toBeCloseTo(0.0005 + 0.2 + 2 * 86_400, 6);
    expect(value.min).toBeCloseTo(0.0005, 9);
    expect(value.max).toBe(2 * 86_400);
    expect((byKind.get('fs.fd')!.value as { count: number }).count).toBe(1);
    // the same counts as the closed counter
    const closed = points(all.find((m) => m.descriptor.name === 'trustflow.resource.closed'));
    expect(
      closed.find((p) => p.attributes['trustflow.resource.kind'] === 'net.socket')?.value,
    ).toBe(3);
  });

  it('lifetimeProducer() refuses a tracker that already recorded lifetimes on its meter', async () => {
    const { metrics, tracker } = setup();
    tracker.track({}, { kind: 'test.k' }).release();
    expect(() => lifetimeProducer(tracker)).toThrow(/already recorded lifetimes/);
    tracker.track({}, { kind: 'test.k' }).release();
    const lifetime = points(await metrics.find('trustflow.resource.lifetime'));
    expect(lifetime[0]?.value).toMatchObject({ count: 2 });
    expect(() => lifetimeProducer({} as ResourceTracker)).toThrow(/not a Trustflow tracker/);
  });

  it('stops reporting after shutdown', async () => {
    const { metrics, tracker } = setup();
    tracker.track({}, { kind: 'test.k' });
    tracker.shutdown();
    const active = await metrics.find('trustflow.resource.active');
    expect(points(active)).toEqual([]);
  });
});

describe('lifetime spans', () => {
  it('start as a child of the active context and end at release, with details', async () => {
    enableContext();
    const { tracing, tracker } = setup();
    const parent = tracing.tracer.startSpan('request');
    const handle = context.with(trace.setSpan(context.active(), parent), () =>
      tracker.track({}, { kind: 'fs.fd', details: { 'file.path': '/tmp/a' } }),
    );
    expect(tracing.spans()).toHaveLength(0);
    handle.release({ details: { 'trustflow.close.cause': 'end' } });
    parent.end();
    const [span, request] = tracing.spans();
    expect(request?.name).toBe('request');
    expect(span?.name).toBe('fs.fd');
    expect(span?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(span?.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(span?.attributes).toEqual({
      'trustflow.resource.kind': 'fs.fd',
      'file.path': '/tmp/a',
      'trustflow.close.cause': 'end',
    });
  });

  it('record a leak event with the site and an error status', async () => {
    const { tracing, tracker } = setup({ stacks: 'all' });
    const ended = new Promise<void>((resolve) => tracker.onLeak(() => resolve()));
    (() => {
      tracker.track({}, { kind: 'test.gc' });
    })();
    await collectGarbage();
    await ended;
    const [span] = tracing.spans();
    expect(span?.status.code).toBe(2);
    expect(span?.events.map((e) => e.name)).toEqual(['trustflow.leak']);
    expect(span?.events[0]?.attributes?.['trustflow.leak.reason']).toBe('gc-unreleased');
    expect(String(span?.events[0]?.attributes?.['trustflow.leak.site'])).toContain(
      'telemetry.test.ts',
    );
  });

  it('records a release error on the span', () => {
    const { tracing, tracker } = setup();
    tracker.track({}, { kind: 'net.socket' }).release({ error: new RangeError('reset') });
    const [span] = tracing.spans();
    expect(span?.status).toEqual({ code: 2, message: 'reset' });
    expect(span?.attributes['error.type']).toBe('RangeError');
  });

  it('cost nothing when spans are off', () => {
    const { tracing, tracker } = setup({ spans: false });
    tracker.track({}, { kind: 'net.socket' }).release();
    expect(tracing.spans()).toEqual([]);
  });
});

describe('without an SDK', () => {
  it('works against the no-op global API', () => {
    const tracker: ResourceTracker = createResourceTracker({ scanIntervalMs: 0 });
    const h = tracker.track({}, { kind: 'test.noop' });
    h.release();
    expect(tracker.snapshot().closed['test.noop']).toBe(1);
    tracker.shutdown();
  });
});
