// The preload proper: the entry of the bundle that register.ts loads once the application is
// about to create its first resource. Nothing here may use top-level await, and nothing here may
// run at load: register.ts decides what to call.
import { readConfig } from './config.js';
import { checkReportFile, Runtime } from './runtime.js';

function stderrLine(line: string): void {
  try {
    process.stderr.write(`${line}\n`);
  } catch {
    // nowhere left to say it
  }
}

/** Reads the configuration, printing a warning for each bad value. */
function configure() {
  const { config, warnings } = readConfig({}, process.env);
  checkReportFile(config, warnings);
  for (const warning of warnings) stderrLine(warning);
  return config;
}

/** Starts the instrumentation; undefined (and one line on stderr) if it could not start. */
export function start(): Runtime | undefined {
  try {
    return new Runtime(configure(), 'preload');
  } catch (error) {
    // Never the application's problem: it carries on without instrumentation.
    stderrLine(
      `trustflow: instrumentation not started: ${error instanceof Error ? error.message : String(error)}`,
    );
    return undefined;
  }
}

/** Only the configuration's warnings: for a program that ended before it needed the rest. */
export function checkConfig(): void {
  try {
    configure();
  } catch (error) {
    stderrLine(
      `trustflow: configuration not read: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
