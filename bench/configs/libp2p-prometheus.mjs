// Configuration "@libp2p/prometheus-metrics": both nodes of the libp2p workload get
// prometheusMetrics() (prom-client's global registry; the second node keeps the first one's
// metrics, as two nodes in one process must). Nothing scrapes during the run.
import { prometheusMetrics } from '@libp2p/prometheus-metrics';

let first = true;
globalThis[Symbol.for('trustflow.bench.libp2pMetrics')] = () => {
  const init = first ? {} : { preserveExistingMetrics: true, collectDefaultMetrics: false };
  first = false;
  return prometheusMetrics(init);
};
