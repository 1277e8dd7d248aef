// Two trustflow-nodes in this process on loopback: service request/response round trips and file
// transfers for a fixed time, measured per wall second and per CPU second.
//   node trustflow-node-exchange.mjs <plain|plugins> <ms>
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTrustflowNode } from '../../packages/trustflow-node/dist/index.js';
import { report } from '../lib.mjs';

const [config = 'plain', msText = '1500'] = process.argv.slice(2);
const ms = Number(msText);
const dir = await mkdtemp(join(tmpdir(), 'tf-bench-node-'));
const quiet = () => {};
// `plugins`: the handles source, fs and net plugins on the serving node (as `trustflow-node start`)
const a = await createTrustflowNode({
  port: 0,
  dataDir: join(dir, 'a'),
  logger: quiet,
  instrument: config === 'plugins',
});
const b = await createTrustflowNode({ port: 0, dataDir: join(dir, 'b'), logger: quiet });
const target = a.multiaddrs()[0];
await b.dial(target);
const file = join(dir, 'f.bin');
const FILE_BYTES = 4 * 1024 * 1024;
await writeFile(file, randomBytes(FILE_BYTES));

async function measure(op, unitsPerOp) {
  for (let i = 0; i < 5; i++) await op(i); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let units = 0;
  let i = 0;
  while (performance.now() - t0 < ms) {
    await op(i++);
    units += unitsPerOp;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { perWallSecond: units / wall, perCpuSecond: units / cpuSeconds };
}

const requests = await measure(() => b.requestService(target, { query: 'x' }), 1);
const files = await measure(async (i) => {
  const result = await b.sendFile(target, file, { jobId: i % 4 });
  if (!result.verified) throw new Error('checksum not confirmed');
}, FILE_BYTES / 1048576);
// b first: a's plugins are process-wide and see b's sockets too
await b.stop();
const stopped = await a.stop();
await rm(dir, { recursive: true, force: true });
if (stopped.leftOpen.length > 0) throw new Error(`left open: ${JSON.stringify(stopped.leftOpen)}`);
report({ requests, files });
