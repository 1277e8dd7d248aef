// The preload proper: the entry of the bundle that register.ts loads once the application is
// about to make its first resource. Nothing here may use top-level await, and nothing runs at
// load: register.ts calls start().
import { readConfig } from './config.js';
import { Runtime } from './runtime.js';

/** Starts the instrumentation; undefined (and one line on stderr) if it could not start. */
export function start(): Runtime | undefined {
  try {
    const { config, warnings } = readConfig({}, process.env);
    for (const warning of warnings) process.stderr.write(`${warning}\n`);
    return new Runtime(config, 'preload');
  } catch (error) {
    // Never the application's problem: it carries on without instrumentation.
    process.stderr.write(
      `trustflow: instrumentation not started: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return undefined;
  }
}
