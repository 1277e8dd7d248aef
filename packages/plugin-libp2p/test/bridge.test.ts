import type { PeerId, PeerInfo, PeerRouting, RoutingOptions } from '@libp2p/interface';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { createTracingHarness, enableContext } from '@trustflow/test-utils';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, closed, instrumentedNode, plainNode, points, pointValue } from './helpers.js';

afterEach(cleanup);

describe("libp2p's own metrics through OpenTelemetry", () => {
  it('exports what libp2p registers: gauges, groups, counters, calculated ones', async () => {
    const a = await instrumentedNode();
    const b = await plainNode();
    await b.handle('/x/1', (s) => void s.close());
    const stream = await a.node.dialProtocol(b.getMultiaddrs()[0]!, '/x/1');
    const m = a.libp2p;
    // calculated metric group of the connection manager (label defaults to the metric name)
    expect(
      await pointValue(m, 'libp2p_connection_manager_connections', {
        libp2p_connection_manager_connections: 'outbound',
      }),
    ).toBe(1);
    expect(
      await pointValue(m, 'libp2p_connection_manager_connections', {
        libp2p_connection_manager_connections: 'inbound',
      }),
    ).toBe(0);
    // calculated group with a label
    expect(
      await pointValue(m, 'libp2p_protocol_streams_total', { protocol: 'outbound /x/1' }),
    ).toBe(1);
    // counter group incremented by the upgrader, counter incremented by noise
    expect(
      await pointValue(m, 'libp2p_connection_manager_dials_total', {
        libp2p_connection_manager_dials_total: 'outbound',
      }),
    ).toBe(1);
    const handshakes = await m.find('libp2p_noise_xxhandshake_successes_total');
    expect(handshakes?.dataPoints[0]?.value).toBe(1);
    expect((handshakes?.descriptor as { type?: string } | undefined)?.type).toBe(
      'OBSERVABLE_COUNTER',
    );
    const encrypted = (await m.find('libp2p_noise_encrypted_packets_total'))?.dataPoints[0]?.value;
    expect(encrypted).toBeGreaterThan(0);
    await stream.close();
    await closed(stream);
  });

  it('bridges every register* kind with OTel semantics', async () => {
    const a = await instrumentedNode();
    const metrics = a.metrics;
    const m = a.libp2p;

    const gauge = metrics.registerMetric('test_gauge', { help: 'a gauge' });
    expect(metrics.registerMetric('test_gauge')).toBe(gauge);
    gauge.update(10);
    gauge.increment();
    gauge.decrement(3);
    expect((await m.find('test_gauge'))?.dataPoints[0]?.value).toBe(8);
    expect((await m.find('test_gauge'))?.descriptor.description).toBe('a gauge');

    const group = metrics.registerMetricGroup('test_group', { label: 'kind' });
    group.update({ a: 5 });
    group.increment({ a: true, b: 2 });
    group.decrement({ b: true });
    expect(await points(m, 'test_group')).toEqual([
      { attributes: { kind: 'a' }, value: 6 },
      { attributes: { kind: 'b' }, value: 1 },
    ]);

    const counter = metrics.registerCounter('test_counter_total');
    counter.increment();
    counter.increment(4);
    expect((await m.find('test_counter_total'))?.dataPoints[0]?.value).toBe(5);

    const counters = metrics.registerCounterGroup('test_counters_total', { label: 'outcome' });
    counters.increment({ ok: true, failed: 3 });
    counters.increment({ ok: 2 });
    expect(await points(m, 'test_counters_total')).toEqual([
      { attributes: { outcome: 'ok' }, value: 3 },
      { attributes: { outcome: 'failed' }, value: 3 },
    ]);

    // a calculated counter returns the increase since the last collection
    let increase = 2;
    expect(metrics.registerCounter('test_calc_total', { calculate: () => increase })).toBe(
      undefined,
    );
    expect((await m.find('test_calc_total'))?.dataPoints[0]?.value).toBe(2);
    increase = 3;
    expect((await m.find('test_calc_total'))?.dataPoints[0]?.value).toBe(5);

    // async calculated gauge
    metrics.registerMetric('test_async', { calculate: async () => 42 });
    expect((await m.find('test_async'))?.dataPoints[0]?.value).toBe(42);

    const histogram = metrics.registerHistogram('test_histogram', { buckets: [1, 10] });
    histogram.observe(0.5);
    histogram.observe(5);
    histogram.observe(50);
    const h = (await m.find('test_histogram'))?.dataPoints[0]?.value as {
      count: number;
      sum: number;
      buckets: { boundaries: number[]; counts: number[] };
    };
    expect(h.count).toBe(3);
    expect(h.sum).toBe(55.5);
    expect(h.buckets).toEqual({ boundaries: [1, 10], counts: [1, 1, 1] });

    const hgroup = metrics.registerHistogramGroup('test_histogram_group', { label: 'op' });
    hgroup.observe({ read: 1, write: 2 });
    const stop = hgroup.timer('read');
    stop();
    const hg = await points(m, 'test_histogram_group');
    expect(hg.map((p) => [p.attributes, (p.value as { count: number }).count])).toEqual([
      [{ op: 'read' }, 2],
      [{ op: 'write' }, 1],
    ]);

    // OTel has no summary: summaries are histograms
    const summary = metrics.registerSummary('test_summary', { percentiles: [0.5] });
    summary.observe(3);
    const s = await m.find('test_summary');
    expect((s?.descriptor as { type?: string } | undefined)?.type).toBe('HISTOGRAM');
    expect((s?.dataPoints[0]?.value as { sum: number } | undefined)?.sum).toBe(3);
    const sgroup = metrics.registerSummaryGroup('test_summary_group', { label: 'k' });
    sgroup.observe({ x: 1 });
    expect((await points(m, 'test_summary_group'))[0]?.attributes).toEqual({ k: 'x' });

    // calculated histogram: a gauge of the calculated value
    metrics.registerHistogram('test_calc_histogram', { calculate: () => 7 });
    expect((await m.find('test_calc_histogram'))?.dataPoints[0]?.value).toBe(7);

    expect(() => metrics.registerHistogram('test_counter_total')).toThrow(
      'libp2pMetrics: test_counter_total is already registered as a counter, not a histogram',
    );
    expect(() => metrics.registerCounter('')).toThrow(
      'libp2pMetrics: a counter needs a non-empty name, got ',
    );
  });

  it('caps the keys of a group, and isolates a failing calculate', async () => {
    const a = await instrumentedNode({ init: { maxGroupKeys: 2 } });
    const group = a.metrics.registerCounterGroup('test_capped_total', { label: 'k' });
    group.increment({ a: true, b: true, c: true, d: 5 });
    expect(await points(a.libp2p, 'test_capped_total')).toEqual([
      { attributes: { k: 'a' }, value: 1 },
      { attributes: { k: 'b' }, value: 1 },
      { attributes: { k: 'other' }, value: 6 },
    ]);
    a.metrics.registerMetric('test_broken', {
      calculate: () => {
        throw new Error('broken calculate');
      },
    });
    const ok = a.metrics.registerMetric('test_fine');
    ok.update(1);
    const all = await a.libp2p.collect();
    expect(all.find((x) => x.descriptor.name === 'test_fine')?.dataPoints[0]?.value).toBe(1);
    expect(all.find((x) => x.descriptor.name === 'test_broken')?.dataPoints ?? []).toEqual([]);
    expect(
      (await a.trackerMetrics.find('trustflow.instrumentation.errors'))?.dataPoints[0]?.value,
    ).toBe(1);
  });
});

describe('traceFunction and createTrace as spans', () => {
  beforeAll(enableContext);

  /** A peer router (libp2p's extension point) that records the trace context it was given. */
  function router(seen: RoutingOptions[], found: () => PeerInfo): () => PeerRouting {
    return () => ({
      async findPeer(_id, options): Promise<PeerInfo> {
        seen.push(options ?? {});
        return found();
      },
      async *getClosestPeers(_key, options) {
        seen.push(options ?? {});
        yield found();
      },
    });
  }

  it("traces libp2p's routing calls under the caller's span when given a trace", async () => {
    const tracing = createTracingHarness();
    const seen: RoutingOptions[] = [];
    const b = await plainNode();
    const target: PeerId = b.peerId;
    const PEER = target.toString();
    const a = await instrumentedNode({
      init: { tracer: tracing.tracer },
      libp2p: {
        peerRouters: [router(seen, () => ({ id: target, multiaddrs: b.getMultiaddrs() }))],
      },
    });
    const parent = tracing.tracer.startSpan('app.lookup');
    await context.with(trace.setSpan(context.active(), parent), async () => {
      const options = { trace: a.metrics.createTrace() };
      await a.node.peerRouting.findPeer(target, options);
      // the caller's options object is not changed
      expect(Object.keys(options)).toEqual(['trace']);
      for await (const _ of a.node.peerRouting.getClosestPeers(new Uint8Array([1, 2]), {
        trace: a.metrics.createTrace(),
      })) {
        // drain
      }
    });
    parent.end();
    // without a trace: no span
    await a.node.peerRouting.findPeer(target);
    const spans = tracing.spans();
    const find = spans.find((s) => s.name === 'libp2p.peerRouting.findPeer');
    const closest = spans.find((s) => s.name === 'libp2p.peerRouting.getClosestPeers');
    expect(spans.map((s) => s.name).sort()).toEqual([
      'app.lookup',
      'libp2p.peerRouting.findPeer',
      'libp2p.peerRouting.getClosestPeers',
    ]);
    expect(find?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(find?.attributes).toEqual({ peer: PEER });
    expect(find?.status.code).toBe(SpanStatusCode.OK);
    expect(closest?.attributes).toEqual({ key: expect.any(String), peers: [PEER] });
    // the router got our span's context as its trace: its own traced calls nest under ours
    expect(trace.getSpan(seen[0]?.trace)?.spanContext().spanId).toBe(find?.spanContext().spanId);
    await tracing.shutdown();
  });

  it('wraps sync, async and generator functions faithfully, with error status on failure', async () => {
    const tracing = createTracingHarness();
    const a = await instrumentedNode({ init: { tracer: tracing.tracer } });
    const m = a.metrics;
    const t = () => ({ trace: m.createTrace() });
    const self = { n: 2 };
    const sync = m.traceFunction(
      't.sync',
      function (this: typeof self, x: number, _o?: object) {
        return this.n * x;
      },
      { optionsIndex: 1 },
    );
    expect(sync.call(self, 21)).toBe(42);
    expect(sync.call(self, 21, t())).toBe(42);
    const boom = new Error('boom');
    const failing = m.traceFunction('t.fail', async (_o?: object) => {
      throw boom;
    });
    await expect(failing(t())).rejects.toBe(boom);
    const gen = m.traceFunction(
      't.gen',
      function* (_o?: object) {
        yield 1;
        yield 2;
      },
      { getAttributesFromYieldedValue: (v, attrs) => ({ ...attrs, last: v }) },
    );
    expect([...gen(t())]).toEqual([1, 2]);
    const names = tracing.spans().map((s) => [s.name, s.status.code, s.attributes]);
    expect(names).toEqual([
      ['t.sync', SpanStatusCode.OK, {}],
      ['t.fail', SpanStatusCode.ERROR, { 'error.type': 'Error' }],
      ['t.gen', SpanStatusCode.OK, { last: 2 }],
    ]);
    await tracing.shutdown();
  });
});
