import { type DiagLogger, diag } from '@opentelemetry/api';

const MAX_LOGGED_SITES = 200;

/**
 * Counts errors caught inside instrumentation and logs the first one of each `where` through OTel
 * diag. Nothing here ever throws.
 */
export class ErrorSink {
  count = 0;
  readonly logger: DiagLogger;
  private readonly logged = new Set<string>();
  private readonly listeners = new Set<(where: string) => void>();

  constructor(namespace: string) {
    this.logger = diag.createComponentLogger({ namespace });
  }

  report(where: string, error: unknown): void {
    this.count++;
    for (const listener of this.listeners) {
      try {
        listener(where);
      } catch {
        // a counter callback failing must not turn into a second error report
      }
    }
    if (this.logged.has(where) || this.logged.size >= MAX_LOGGED_SITES) return;
    this.logged.add(where);
    try {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      this.logger.error(`error caught in ${where} (reported once): ${message}`);
    } catch {
      // a broken diag logger is not our host's problem either
    }
  }

  onError(listener: (where: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
