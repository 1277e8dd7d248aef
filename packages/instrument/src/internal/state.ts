import type { Meter, Tracer } from '@opentelemetry/api';
import type { ResourceTracker } from '@trustflow/core';

/** What the zero-code libp2p injection needs from the running instrumentation. */
export interface ActiveInstrumentation {
  readonly tracker: ResourceTracker;
  meterFor(scope: string): Meter | undefined;
  tracerFor(scope: string): Tracer | undefined;
  reportError(where: string, error: unknown): void;
}

// Registered globally so that two copies of this package (a preload and an application's own
// dependency) agree on which one is running.
const KEY = Symbol.for('@trustflow/instrument');

export function activeInstrumentation(): ActiveInstrumentation | undefined {
  return (globalThis as { [KEY]?: ActiveInstrumentation })[KEY];
}

export function setActiveInstrumentation(value: ActiveInstrumentation | undefined): void {
  const holder = globalThis as { [KEY]?: ActiveInstrumentation };
  if (value === undefined) delete holder[KEY];
  else holder[KEY] = value;
}
