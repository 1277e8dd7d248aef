import type {
  CalculatedHistogramOptions,
  CalculatedMetricOptions,
  CalculatedSummaryOptions,
  Connection,
  Counter,
  CounterGroup,
  Histogram,
  HistogramGroup,
  HistogramOptions,
  Metric,
  MetricGroup,
  MetricOptions,
  Metrics,
  MultiaddrConnection,
  Stream,
  StreamHandler,
  Summary,
  SummaryGroup,
  SummaryOptions,
} from '@libp2p/interface';
import {
  type BatchObservableCallback,
  type Meter,
  metrics as otelMetrics,
  trace as otelTrace,
  type Tracer,
} from '@opentelemetry/api';
import {
  type Attributes,
  type CreationSite,
  defaultTracker,
  definePlugin,
  type PluginContext,
  type ResourceHandle,
  type ResourceTracker,
  type TrackOptions,
  type TrustflowPlugin,
} from '@trustflow/core';
import type { Libp2pMetricsComponents, Libp2pMetricsInit } from '../types.js';
import { MetricBridge, OTHER } from './bridge.js';
import { attachIo, type Counted, Io, IoTotals, ioActivity, isCounted, retainIo } from './io.js';
import { createTrace, traceFunction } from './trace.js';

export const STREAM_KIND = 'libp2p.stream';
export const CONNECTION_KIND = 'libp2p.connection';
export const ATTR_PROTOCOL = 'libp2p.protocol';
export const ATTR_DIRECTION = 'libp2p.direction';
export const ATTR_TRANSPORT = 'libp2p.transport';

/** libp2p's plumbing, cut from creation stacks with this package's own code. */
const INTERNAL_PATHS = [
  ...['libp2p', '@libp2p/utils', '@libp2p/multistream-select'].flatMap((name) => [
    `/node_modules/${name}/`,
    `\\node_modules\\${name.replace('/', '\\')}\\`,
  ]),
];

const SERVICE_CAPABILITIES = Symbol.for('@libp2p/service-capabilities');

/** Multiaddr protocol names that identify a transport (the rest are addresses). */
const TRANSPORT_NAMES = new Set([
  'tcp',
  'udp',
  'quic',
  'quic-v1',
  'ws',
  'wss',
  'tls',
  'webtransport',
  'webrtc',
  'webrtc-direct',
  'p2p-circuit',
  'unix',
  'memory',
]);

interface RegistrarLike {
  handle(protocol: string, handler: StreamHandler, options?: unknown): Promise<void>;
  getHandler(protocol: string): { handler: StreamHandler };
}

const ATTR_STREAM_ID = 'libp2p.stream.id';

interface Peer {
  connection: Connection;
  /** Peer id and remote address, shared by the details of every stream of the connection. */
  details: Attributes;
}

/** Attribute sets and byte totals of one (protocol, direction) or (direction, transport). */
interface Series {
  attributes: Attributes;
  totals: IoTotals;
}

class Libp2pMetrics implements Metrics {
  readonly [Symbol.toStringTag] = '@trustflow/plugin-libp2p';
  readonly [SERVICE_CAPABILITIES] = ['@libp2p/metrics'];

  private readonly tracker: ResourceTracker;
  private readonly meter: Meter;
  private readonly tracer: Tracer;
  private readonly plugin: TrustflowPlugin;
  private readonly bridge: MetricBridge;
  private readonly maxProtocols: number;
  private ctx: PluginContext | undefined;
  /** Byte totals by protocol (streams) and by transport (connections). */
  private readonly protocolTotals = new Map<string, IoTotals>();
  private readonly transportTotals = new Map<string, IoTotals>();
  private readonly streamSeries = new Map<string, Series>();
  /** The same series by protocol, then direction (at most `maxProtocols` protocols). */
  private readonly seriesByProtocol = new Map<string, { inbound?: Series; outbound?: Series }>();
  private readonly connectionSeries = new Map<string, Series>();
  /** Open connections (for the peer of a stream); removal on connection:close. */
  private readonly connections = new Set<Connection>();
  /** The connection that carried the last stream, with its peer id and address as strings. */
  private last: Peer | undefined;
  /** Where each protocol handler was registered (the site of its inbound streams). */
  private readonly handlerSites = new WeakMap<StreamHandler, CreationSite>();
  /** Connection handles by the timeline object the Connection shares with its maConn. */
  private readonly byTimeline = new WeakMap<object, ResourceHandle>();
  private registrarHooked = false;

  /**
   * What the byte counters, the bridge and traceFunction consult on every call: `active` is a
   * plain field (true between enable and disable), cheaper than asking the plugin context.
   */
  private readonly hooks: { active: boolean; reportError(w: string, e: unknown): void };

  constructor(
    private readonly components: Libp2pMetricsComponents,
    init: Libp2pMetricsInit,
  ) {
    this.hooks = {
      active: false,
      reportError: (where, error) => this.ctx?.reportError(where, error),
    };
    this.tracker = init.tracker ?? defaultTracker();
    this.meter = init.meter ?? otelMetrics.getMeter('@trustflow/plugin-libp2p');
    this.tracer = init.tracer ?? otelTrace.getTracer('@trustflow/plugin-libp2p');
    this.maxProtocols = init.maxProtocols ?? 100;
    this.bridge = new MetricBridge(this.meter, this.hooks, init.maxGroupKeys ?? 100);
    this.plugin = definePlugin({
      name: 'plugin-libp2p',
      module: import.meta.url,
      internalPaths: INTERNAL_PATHS,
      setup: (ctx) => this.setup(ctx),
    });
    this.plugin.enable({ tracker: this.tracker, meter: this.meter, tracer: this.tracer });
    // The registrar is created after the metrics: hook it once libp2p's constructor is done
    // (before any user code can register a handler), and again at start if need be.
    queueMicrotask(() => this.hookRegistrar());
  }

  // --- lifecycle (libp2p Startable) ---

  start(): void {
    if (!this.plugin.enabled) {
      this.plugin.enable({ tracker: this.tracker, meter: this.meter, tracer: this.tracer });
    }
    this.hookRegistrar();
  }

  stop(): void {}

  /** After libp2p has closed its connections: stop observing, restore the registrar. */
  afterStop(): void {
    this.plugin.disable();
  }

  private setup(ctx: PluginContext): () => void {
    this.ctx = ctx;
    this.hooks.active = true;
    this.registrarHooked = false;
    this.bridge.attach();
    ctx.onDisable(() => this.bridge.detach());
    ctx.onDisable(retainIo());
    this.observeIo(ctx);
    const events = this.components.events;
    const onOpen = (event: CustomEvent<Connection>) => this.connectionOpened(event.detail);
    const onClose = (event: CustomEvent<Connection>) => this.connectionClosed(event.detail);
    events.addEventListener('connection:open', onOpen);
    events.addEventListener('connection:close', onClose);
    return () => {
      this.hooks.active = false;
      events.removeEventListener('connection:open', onOpen);
      events.removeEventListener('connection:close', onClose);
      this.connections.clear();
      this.last = undefined;
    };
  }

  private observeIo(ctx: PluginContext): void {
    const m = ctx.meter;
    const streams = m.createObservableCounter('trustflow.libp2p.stream.io', {
      unit: 'By',
      description: 'Bytes sent and received on libp2p protocol streams, by protocol.',
    });
    const connections = m.createObservableCounter('trustflow.libp2p.connection.io', {
      unit: 'By',
      description:
        'Bytes sent and received on libp2p connections (after transport, before encryption and muxing).',
    });
    const callback: BatchObservableCallback = (result) => {
      for (const t of this.protocolTotals.values()) {
        result.observe(streams, t.sent, t.transmit);
        result.observe(streams, t.received, t.receive);
      }
      for (const t of this.transportTotals.values()) {
        result.observe(connections, t.sent, t.transmit);
        result.observe(connections, t.received, t.receive);
      }
    };
    m.addBatchObservableCallback(callback, [streams, connections]);
    ctx.onDisable(() => m.removeBatchObservableCallback(callback, [streams, connections]));
  }

  // --- connections and streams ---

  trackMultiaddrConnection(maConn: MultiaddrConnection): void {
    const ctx = this.ctx;
    if (!ctx?.active) return;
    try {
      const target = maConn as unknown as Counted & MultiaddrConnection;
      if (isCounted(target)) return;
      const series = this.connectionSeriesFor(maConn);
      const handle = ctx.tracker.track(target, {
        kind: CONNECTION_KIND,
        attributes: series.attributes,
        details: { 'libp2p.remote_addr': String(maConn.remoteAddr) },
        close: abortIdle,
        activity: ioActivity,
        inspect: inspectStatus,
      });
      if (maConn.timeline && typeof maConn.timeline === 'object') {
        this.byTimeline.set(maConn.timeline, handle);
      }
      attachIo(target, new Io(handle, series.totals, this.hooks));
    } catch (error) {
      ctx.reportError('trackMultiaddrConnection', error);
    }
  }

  trackProtocolStream(stream: Stream): void {
    const ctx = this.ctx;
    if (ctx === undefined || !this.hooks.active) return;
    try {
      const target = stream as unknown as Counted & Stream;
      if (isCounted(target)) return;
      const series = this.streamSeriesFor(stream.protocol, stream.direction);
      // No strings are built per stream: the peer's details are shared, the stream id is read when a
      // report or scan inspects the stream (or put on its span when that records).
      const spec: TrackOptions<Counted & Stream> = {
        kind: STREAM_KIND,
        attributes: series.attributes,
        details: this.peerOf(stream)?.details,
        close: abortIdle,
        activity: ioActivity,
        inspect: inspectStream,
        // An inbound stream was opened by the remote: the code responsible for it is the
        // handler, so its site is where that handler was registered.
        site: stream.direction === 'inbound' ? this.handlerSite(stream.protocol) : undefined,
      };
      const handle = ctx.tracker.track(target, spec);
      if (handle.recording) handle.annotate({ [ATTR_STREAM_ID]: String(stream.id) });
      attachIo(target, new Io(handle, series.totals, this.hooks));
    } catch (error) {
      ctx.reportError('trackProtocolStream', error);
    }
  }

  private streamSeriesFor(protocol: string, direction: string): Series {
    // the hot path: one lookup by protocol (no key string built per stream)
    const pair = this.seriesByProtocol.get(protocol);
    if (pair !== undefined) {
      const cached = direction === 'inbound' ? pair.inbound : pair.outbound;
      if (cached !== undefined) return cached;
    }
    const series = this.streamSeriesSlow(protocol, direction);
    // a protocol merged into `other` past maxProtocols is not remembered by its own name
    if (series.totals.key === protocol && (direction === 'inbound' || direction === 'outbound')) {
      let entry = pair;
      if (entry === undefined) {
        entry = {};
        this.seriesByProtocol.set(protocol, entry);
      }
      entry[direction] = series;
    }
    return series;
  }

  private streamSeriesSlow(protocol: string, direction: string): Series {
    const totals = this.protocolTotalsFor(String(protocol));
    const key = `${totals.key}\n${direction}`;
    let series = this.streamSeries.get(key);
    if (series === undefined) {
      series = {
        attributes: Object.freeze({
          [ATTR_PROTOCOL]: totals.key,
          [ATTR_DIRECTION]: String(direction),
        }),
        totals,
      };
      this.streamSeries.set(key, series);
    }
    return series;
  }

  /** Totals of a protocol; past `maxProtocols` distinct ones, the shared `other` totals. */
  private protocolTotalsFor(protocol: string): IoTotals {
    let totals = this.protocolTotals.get(protocol);
    if (totals !== undefined) return totals;
    if (this.protocolTotals.size >= this.maxProtocols) protocol = OTHER;
    totals = this.protocolTotals.get(protocol);
    if (totals === undefined) {
      totals = new IoTotals(protocol, ATTR_PROTOCOL);
      this.protocolTotals.set(protocol, totals);
    }
    return totals;
  }

  private connectionSeriesFor(maConn: MultiaddrConnection): Series {
    const transport = transportOf(maConn);
    const direction = String(maConn.direction);
    const key = `${transport}\n${direction}`;
    let series = this.connectionSeries.get(key);
    if (series === undefined) {
      let totals = this.transportTotals.get(transport);
      if (totals === undefined) {
        totals = new IoTotals(transport, ATTR_TRANSPORT);
        this.transportTotals.set(transport, totals);
      }
      series = {
        attributes: Object.freeze({ [ATTR_DIRECTION]: direction, [ATTR_TRANSPORT]: transport }),
        totals,
      };
      this.connectionSeries.set(key, series);
    }
    return series;
  }

  private connectionOpened(connection: Connection): void {
    try {
      this.connections.add(connection);
      const handle = this.byTimeline.get(connection.timeline);
      handle?.annotate({ 'libp2p.peer.id': String(connection.remotePeer) });
    } catch (error) {
      this.ctx?.reportError('connection:open', error);
    }
  }

  private connectionClosed(connection: Connection): void {
    this.connections.delete(connection);
    if (this.last?.connection === connection) this.last = undefined;
  }

  /** The peer at the other end of `stream`'s connection (the last one that matched is tried first). */
  private peerOf(stream: Stream): Peer | undefined {
    const last = this.last;
    if (last !== undefined && carries(last.connection, stream)) return last;
    for (const connection of this.connections) {
      if (connection !== last?.connection && carries(connection, stream)) {
        this.last = {
          connection,
          details: Object.freeze({
            'libp2p.peer.id': String(connection.remotePeer),
            'libp2p.remote_addr': String(connection.remoteAddr),
          }),
        };
        return this.last;
      }
    }
    return undefined;
  }

  // --- handler sites ---

  private hookRegistrar(): void {
    const ctx = this.ctx;
    if (this.registrarHooked || !ctx?.active) return;
    let registrar: RegistrarLike | undefined;
    try {
      // libp2p's components object throws for a service that does not exist (yet)
      registrar = (this.components as { registrar?: RegistrarLike }).registrar;
    } catch {
      return;
    }
    if (typeof registrar?.handle !== 'function' || typeof registrar.getHandler !== 'function') {
      return;
    }
    this.registrarHooked = true;
    const sites = this.handlerSites;
    const tracker = ctx.tracker;
    ctx.patch(
      registrar,
      'handle',
      (original) =>
        function handle(this: RegistrarLike, protocol, handler, options) {
          let site: CreationSite | undefined;
          if (ctx.active && typeof handler === 'function') {
            try {
              site = tracker.captureSite(STREAM_KIND);
            } catch (error) {
              ctx.reportError('registrar.handle', error);
            }
          }
          const result = original.call(this, protocol, handler, options);
          if (site?.sampled) {
            try {
              if (this.getHandler(protocol).handler === handler) sites.set(handler, site);
            } catch {
              // not registered (duplicate protocol): the error reaches the caller through result
            }
          }
          return result;
        },
    );
  }

  private handlerSite(protocol: string): CreationSite | undefined {
    try {
      const registrar = (this.components as { registrar?: RegistrarLike }).registrar;
      const handler = registrar?.getHandler(protocol).handler;
      return handler === undefined ? undefined : this.handlerSites.get(handler);
    } catch {
      return undefined;
    }
  }

  // --- libp2p's own metrics ---

  registerMetric(name: string, options?: MetricOptions): Metric;
  registerMetric(name: string, options: CalculatedMetricOptions): void;
  registerMetric(name: string, options?: MetricOptions | CalculatedMetricOptions): Metric | void {
    return this.bridge.register('metric', name, options) as Metric | undefined;
  }

  registerMetricGroup(name: string, options?: MetricOptions): MetricGroup;
  registerMetricGroup(name: string, options: CalculatedMetricOptions<Record<string, number>>): void;
  registerMetricGroup(
    name: string,
    options?: MetricOptions | CalculatedMetricOptions<Record<string, number>>,
  ): MetricGroup | void {
    return this.bridge.register('metric group', name, options) as MetricGroup | undefined;
  }

  registerCounter(name: string, options?: MetricOptions): Counter;
  registerCounter(name: string, options: CalculatedMetricOptions): void;
  registerCounter(name: string, options?: MetricOptions | CalculatedMetricOptions): Counter | void {
    return this.bridge.register('counter', name, options) as Counter | undefined;
  }

  registerCounterGroup(name: string, options?: MetricOptions): CounterGroup;
  registerCounterGroup(
    name: string,
    options: CalculatedMetricOptions<Record<string, number>>,
  ): void;
  registerCounterGroup(
    name: string,
    options?: MetricOptions | CalculatedMetricOptions<Record<string, number>>,
  ): CounterGroup | void {
    return this.bridge.register('counter group', name, options) as CounterGroup | undefined;
  }

  registerHistogram(name: string, options?: HistogramOptions): Histogram;
  registerHistogram(name: string, options: CalculatedHistogramOptions): void;
  registerHistogram(
    name: string,
    options?: HistogramOptions | CalculatedHistogramOptions,
  ): Histogram | void {
    return this.bridge.register('histogram', name, options) as Histogram | undefined;
  }

  registerHistogramGroup(name: string, options?: HistogramOptions): HistogramGroup;
  registerHistogramGroup(
    name: string,
    options: CalculatedHistogramOptions<Record<string, number>>,
  ): void;
  registerHistogramGroup(
    name: string,
    options?: HistogramOptions | CalculatedHistogramOptions<Record<string, number>>,
  ): HistogramGroup | void {
    return this.bridge.register('histogram', name, options) as HistogramGroup | undefined;
  }

  registerSummary(name: string, options?: SummaryOptions): Summary;
  registerSummary(name: string, options: CalculatedSummaryOptions): void;
  registerSummary(
    name: string,
    options?: SummaryOptions | CalculatedSummaryOptions,
  ): Summary | void {
    return this.bridge.register('summary', name, options) as Summary | undefined;
  }

  registerSummaryGroup(name: string, options?: SummaryOptions): SummaryGroup;
  registerSummaryGroup(
    name: string,
    options: CalculatedSummaryOptions<Record<string, number>>,
  ): void;
  registerSummaryGroup(
    name: string,
    options?: SummaryOptions | CalculatedSummaryOptions<Record<string, number>>,
  ): SummaryGroup | void {
    return this.bridge.register('summary', name, options) as SummaryGroup | undefined;
  }

  // --- tracing ---

  createTrace(): unknown {
    return createTrace();
  }

  traceFunction<F extends (...args: any[]) => any>(
    name: string,
    fn: F,
    options?: Parameters<Metrics['traceFunction']>[2],
  ): F {
    return traceFunction(this.tracer, this.hooks, name, fn, options as never);
  }
}

/** True when `connection` multiplexes `stream` (newest streams are at the end of the list). */
function carries(connection: Connection, stream: Stream): boolean {
  const streams = connection.streams;
  for (let i = streams.length - 1; i >= 0; i--) if (streams[i] === stream) return true;
  return false;
}

function transportOf(maConn: MultiaddrConnection): string {
  try {
    const names: string[] = [];
    for (const component of maConn.remoteAddr.getComponents()) {
      if (TRANSPORT_NAMES.has(component.name)) names.push(component.name);
    }
    return names.length > 0 ? names.join('/') : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** closeStale() closer: aborts (a graceful close would wait for an idle remote forever). */
function abortIdle(target: { abort(error: Error): void }): void {
  const error = new Error('closed by trustflow closeStale(): open and idle past the thresholds');
  error.name = 'StaleResourceError';
  target.abort(error);
}

/** Statuses shown in reports: tells a half-closed stream from one nobody closed. */
function inspectStream(target: Counted & Partial<Stream>): Attributes {
  const attributes = inspectStatus(target);
  if (target.id !== undefined) attributes[ATTR_STREAM_ID] = String(target.id);
  return attributes;
}

function inspectStatus(target: Counted & Partial<Stream>): Attributes {
  return {
    'libp2p.status': String(target.status),
    'libp2p.write_status': String(target.writeStatus),
    'libp2p.remote_write_status': String(target.remoteWriteStatus),
  };
}

export function createLibp2pMetrics(
  components: Libp2pMetricsComponents,
  init: Libp2pMetricsInit,
): Metrics {
  return new Libp2pMetrics(components, init);
}
