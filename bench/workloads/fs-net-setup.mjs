// Shared by the fs-net workloads: enables one plugin with default options on a default tracker
// (sampled stacks, spans on, the global OTel API: no SDK registered, so spans do not record).
// config 'sdk' gives the tracker an in-memory OTel metrics SDK instead. Plugins are imported
// from their built packages (run `pnpm build` first).
export async function enablePlugins(config, which) {
  if (config === 'off') return undefined;
  const { createResourceTracker } = await import('@trustflow/core');
  const options = {};
  if (config === 'sdk') {
    const { createMetricsHarness } = await import('../../packages/test-utils/dist/index.js');
    options.meter = createMetricsHarness().meter;
  } else if (config !== 'on') {
    throw new Error(`unknown TF_PLUGIN ${config}`);
  }
  const tracker = createResourceTracker(options);
  const plugin =
    which === 'fs'
      ? (await import('../../packages/plugin-fs/dist/index.js')).fsPlugin()
      : (await import('../../packages/plugin-net/dist/index.js')).netPlugin();
  plugin.enable({ tracker, meter: options.meter });
  return tracker;
}
