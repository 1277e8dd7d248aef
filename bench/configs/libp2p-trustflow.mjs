// Configuration "libp2pMetrics()": both nodes of the libp2p workload get libp2pMetrics() from
// @trustflow/plugin-libp2p, with an OpenTelemetry meter provider registered the way the preload
// registers it (SDK MeterProvider, Prometheus endpoint on loopback, nothing scraping, the
// tracker's lifetime histogram through core's lifetimeProducer()), so the metrics are really
// recorded, as prom-client records them for @libp2p/prometheus-metrics.
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { lifetimeProducer } from '@trustflow/core';
import { libp2pMetrics } from '@trustflow/plugin-libp2p';

const port = Number(process.env.BENCH_PROM_PORT ?? 0);
// the producer needs the default tracker, which takes its meter from the global provider
let lifetimes;
const metricProducers = [{ collect: () => lifetimes.collect() }];
const readers = port ? [new PrometheusExporter({ host: '127.0.0.1', port, metricProducers })] : [];
metrics.setGlobalMeterProvider(new MeterProvider({ readers }));
lifetimes = lifetimeProducer();

globalThis[Symbol.for('trustflow.bench.libp2pMetrics')] = () => libp2pMetrics();
