// Configuration "why-is-node-running loaded": imported first, as its README asks, so its
// async_hooks hook sees every handle the application creates. The detection fixtures call the
// checkpoint, which prints its list of handles keeping the process alive.
import why from 'why-is-node-running';

globalThis[Symbol.for('trustflow.bench.checkpoint')] = () => why();
