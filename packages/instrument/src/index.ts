import { type Config, isDisabled, readConfig } from './internal/config.js';
import { Runtime } from './internal/runtime.js';
import { activeInstrumentation } from './internal/state.js';
import type { Instrumentation, InstrumentOptions } from './types.js';

export type {
  Instrumentation,
  InstrumentOptions,
  MetricsExporterName,
  PluginName,
  ReportMode,
  TracesExporterName,
} from './types.js';

/**
 * Instruments this process from code instead of the preload: creates the tracker, enables the
 * plugins, starts the exporters and the report handling. Options left out are read from the
 * environment (the same variables as the preload); a bad environment value prints a one-line
 * warning and its default is used, a bad option throws a TypeError naming it. Called again (or
 * under the preload), it returns the instrumentation already running.
 * With `TRUSTFLOW_DISABLED=1` nothing is enabled: the tracker exists but nothing feeds it.
 */
export function instrument(options: InstrumentOptions = {}): Instrumentation {
  const active = activeInstrumentation();
  if (active instanceof Runtime) return active;
  const env = options.env ?? process.env;
  const { config, warnings } = readConfig(options, env);
  for (const warning of warnings) process.stderr.write(`${warning}\n`);
  const { meterProvider, tracerProvider } = options;
  // With providers of its own, the application exports; we only feed them.
  if (meterProvider) config.metricsExporters = [];
  if (tracerProvider) config.tracesExporters = [];
  return new Runtime(isDisabled(env) ? inert(config) : config, 'programmatic', {
    meterProvider,
    tracerProvider,
  });
}

function inert(config: Config): Config {
  return {
    ...config,
    plugins: [],
    metricsExporters: [],
    tracesExporters: [],
    report: 'off',
    signals: false,
  };
}
