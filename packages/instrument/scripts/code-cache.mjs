// Run by bundle.mjs in a child process: loads the bundle, starts the instrumentation in this
// process (so that the functions start-up runs are compiled) and writes V8's code cache for the
// bundle. Exits before the first event-loop turn, so the endpoint and SDK never start.
import { loadBundle } from '../dist/internal/bundle-loader.js';

loadBundle(process.argv[2], true, (bundle) => bundle.start());
process.exit(0);
