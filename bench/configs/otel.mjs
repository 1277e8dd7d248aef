// Configuration "OTel SDK + fs/net instrumentations": what a user who picks OpenTelemetry's own
// instrumentations sets up: a tracer provider with a batch span processor, the fs and net
// instrumentations (the only way they report anything is spans), runtime metrics and a Prometheus
// endpoint on loopback (as our preload has). The span exporter discards the batches it is handed
// (it counts them): the cost measured is creating, recording and batching the spans, not
// serialising them or the network to a collector.
// Loaded with --import before the workload. The ESM hook of @opentelemetry/instrumentation is
// registered as its docs say for ESM applications.
import { createRequire, register } from 'node:module';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { FsInstrumentation } from '@opentelemetry/instrumentation-fs';
import { NetInstrumentation } from '@opentelemetry/instrumentation-net';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);

let exportedSpans = 0;
const discardExporter = {
  export(spans, done) {
    exportedSpans += spans.length;
    done({ code: 0 });
  },
  shutdown: async () => {},
  forceFlush: async () => {},
};

const contextManager = new AsyncLocalStorageContextManager();
contextManager.enable();
context.setGlobalContextManager(contextManager);
const tracerProvider = new TracerProvider({
  spanProcessors: [new BatchSpanProcessor({ exporter: discardExporter })],
});
trace.setGlobalTracerProvider(tracerProvider);

const port = Number(process.env.BENCH_PROM_PORT ?? 0);
const readers = port ? [new PrometheusExporter({ host: '127.0.0.1', port })] : [];
const meterProvider = new MeterProvider({ readers });
metrics.setGlobalMeterProvider(meterProvider);

registerInstrumentations({
  instrumentations: [
    new FsInstrumentation(),
    new NetInstrumentation(),
    new RuntimeNodeInstrumentation(),
  ],
});
// The instrumentations patch CommonJS builtins when they are required: require them once here,
// so workloads that import them (default import, property access at call time) see the patches.
const require = createRequire(import.meta.url);
require('node:fs');
require('node:net');

globalThis[Symbol.for('trustflow.bench.otel')] = { spans: () => exportedSpans, tracerProvider };
