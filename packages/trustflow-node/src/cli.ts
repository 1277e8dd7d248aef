#!/usr/bin/env node
import { runCli } from './internal/cli-main.js';

const controller = new AbortController();
const stop = () => controller.abort();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
process.off('SIGINT', stop);
process.off('SIGTERM', stop);
process.exitCode = code;
