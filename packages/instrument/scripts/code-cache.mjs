// Run by bundle.mjs in a child process: loads the bundle once (which starts the preload in this
// process) and writes V8's code cache for it after execution. Exits before the first event-loop
// turn, so the preload's endpoint and SDK never start.
import { loadBundle } from '../dist/internal/bundle-loader.js';

loadBundle(process.argv[2], true);
process.exit(0);
