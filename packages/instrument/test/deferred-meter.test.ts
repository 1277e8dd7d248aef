import { createMetricsHarness } from '@trustflow/test-utils';
import { describe, expect, it } from 'vitest';
import { DeferredMeterProvider } from '../src/internal/deferred-meter.js';

function points(metric: { dataPoints: { value: unknown; attributes: object }[] } | undefined) {
  return metric?.dataPoints.map((p) => [p.attributes, p.value]);
}

describe('DeferredMeterProvider', () => {
  it('re-creates instruments and callbacks made before attach() on the real meter', async () => {
    const deferred = new DeferredMeterProvider();
    const meter = deferred.getMeter('scope-a');
    expect(deferred.getMeter('scope-a')).toBe(meter);
    const counter = meter.createCounter('test.count', { unit: '{thing}' });
    const histogram = meter.createHistogram('test.lifetime', { unit: 's' });
    const gauge = meter.createObservableGauge('test.gauge');
    const batchA = meter.createObservableUpDownCounter('test.active');
    const batchB = meter.createObservableCounter('test.opened');
    gauge.addCallback((r) => r.observe(7, { k: 'v' }));
    let batchCalls = 0;
    const batch = (r: { observe: (o: typeof batchA, v: number) => void }) => {
      batchCalls++;
      r.observe(batchA, 3);
      r.observe(batchB, 11);
    };
    meter.addBatchObservableCallback(batch, [batchA, batchB]);
    counter.add(100); // before attach: dropped

    const harness = createMetricsHarness();
    deferred.attach(harness.provider);
    counter.add(2, { a: 'x' });
    histogram.record(0.5);
    expect(points(await harness.find('test.count'))).toEqual([[{ a: 'x' }, 2]]);
    expect(points(await harness.find('test.gauge'))).toEqual([[{ k: 'v' }, 7]]);
    expect(points(await harness.find('test.active'))).toEqual([[{}, 3]]);
    expect(points(await harness.find('test.opened'))).toEqual([[{}, 11]]);
    const lifetime = (await harness.find('test.lifetime'))!;
    expect(lifetime.descriptor.unit).toBe('s');
    expect((lifetime.dataPoints[0]!.value as { count: number }).count).toBe(1);

    // removal maps to what was registered on the real meter
    meter.removeBatchObservableCallback(batch, [batchA, batchB]);
    batchCalls = 0;
    await harness.collect();
    expect(batchCalls).toBe(0);
    // after attach, new meters are the real ones
    meter.createCounter('test.late').add(1);
    expect(points(await harness.find('test.late'))).toEqual([[{}, 1]]);
    expect(deferred.getMeter('scope-b')).not.toBeInstanceOf(
      Object.getPrototypeOf(meter).constructor,
    );
    await harness.shutdown();
  });
});
