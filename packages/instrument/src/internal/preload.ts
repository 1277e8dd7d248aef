// The preload proper, loaded synchronously by register.ts. Nothing here may use top-level await:
// `--require` loads it through require(esm).
import { readConfig } from './config.js';
import { checkReportFile, Runtime } from './runtime.js';

try {
  const { config, warnings } = readConfig({}, process.env);
  checkReportFile(config, warnings);
  for (const warning of warnings) process.stderr.write(`${warning}\n`);
  new Runtime(config, 'preload');
} catch (error) {
  // Never the application's problem: it starts without instrumentation.
  process.stderr.write(
    `trustflow: instrumentation not started: ${error instanceof Error ? error.message : String(error)}\n`,
  );
}
