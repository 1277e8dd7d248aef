// Configuration "wtfnode loaded": required first (--require), which installs its hooks on timers,
// EventEmitter construction and listeners; init() adds its SIGINT/SIGTERM dump handlers (what the
// `wtfnode app.js` launcher does). The detection fixtures call the checkpoint, which dumps.
const wtf = require('wtfnode');

wtf.init();
globalThis[Symbol.for('trustflow.bench.checkpoint')] = () => wtf.dump();
