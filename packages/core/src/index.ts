import { Tracker } from './internal/tracker.js';
import type { ResourceTracker, ResourceTrackerOptions } from './types.js';

export {
  asyncHooksAvoidPromises,
  createAsyncHooksSource,
  DEFAULT_ASYNC_TYPES,
} from './internal/async-hooks.js';
export { defaultTracker, setDefaultTracker } from './internal/default-tracker.js';
export { formatReport } from './internal/format.js';
export { createHandlesSource } from './internal/handles.js';
export {
  type LifetimeDataPoint,
  type LifetimeProducer,
  type LifetimeScopeMetrics,
  lifetimeProducer,
} from './internal/lifetime-producer.js';
export { LiveList } from './internal/live-list.js';
export { createPluginHost, definePlugin, type PluginHost } from './internal/plugins.js';
export { openFdCount } from './internal/proc.js';
export { ATTR_KIND, ATTR_REASON, ATTR_SITE } from './internal/telemetry.js';
export type {
  AsyncHooksSourceOptions,
  Attributes,
  AttributeValue,
  CloseStaleOptions,
  CloseStaleResult,
  CreationSite,
  LeakEvent,
  LeakGroup,
  LeakReason,
  LiveNode,
  OpenResource,
  PluginContext,
  PluginDefinition,
  PluginHostContext,
  ReleaseOptions,
  Report,
  ReportOptions,
  ResourceHandle,
  ResourceTracker,
  ResourceTrackerOptions,
  Snapshot,
  StackMode,
  TrackOptions,
  TrustflowPlugin,
} from './types.js';

/** Creates a resource tracker. Bad options throw a TypeError naming the option. */
export function createResourceTracker(options?: ResourceTrackerOptions): ResourceTracker {
  return new Tracker(options);
}

// --- prevention toolkit ---
export { createMemoryPressureMonitor } from './internal/pressure.js';
export { sampleProcess } from './internal/sampler.js';
export { createScope, createShutdownCoordinator, withTimeout } from './internal/scope.js';
export { createTrendMonitor, estimateGrowth } from './internal/trend.js';
export type {
  Cleanup,
  CleanupScope,
  GrowthEstimate,
  GrowthOptions,
  GrowthPoint,
  MemoryPressureFigures,
  MemoryPressureMonitor,
  MemoryPressureOptions,
  MemoryReading,
  ProcessSample,
  ScopeOptions,
  ShutdownCoordinator,
  ShutdownOptions,
  ShutdownResult,
  TrendEvent,
  TrendMonitor,
  TrendMonitorOptions,
  WithTimeoutOptions,
} from './types.js';
