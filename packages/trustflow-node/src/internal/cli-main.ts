import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { NodeConfig, TransferProgress, TrustflowNodeOptions } from '../types.js';
import { ConfigError, loadConfigFile, validateConfig } from './config.js';
import { createTrustflowNode } from './node.js';

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  /** Ends `start` (the binary wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
  /** Called with the running node's addresses once `start` listens (tests use it). */
  onListening?: (addresses: string[]) => void;
}

const USAGE = `Usage: trustflow-node <command> [options]

Commands:
  start                       run a node until SIGINT/SIGTERM
  lookup <query>              ask the network for service offers
  send-file <multiaddr> <file>
                              send a file to a node and verify its checksum

Run trustflow-node <command> --help for the command's options.
`;

const HELP: Record<string, string> = {
  start: `Usage: trustflow-node start [--port N] [--config file.json] [--data-dir dir]

Runs a node on the /trustflow-network/1.0.0 protocol until SIGINT or SIGTERM, then shuts down
gracefully (drain workers, close streams, stop libp2p) within the configured deadlines.

Options:
  --port N            TCP port (default 30609; 0 picks a free one)
  --host IP           listen address (default 127.0.0.1)
  --config FILE       JSON config file; flags override it (see docs/trustflow-node.md)
  --data-dir DIR      peer key and received files (default ~/.trustflow-node)
  --offers FILE       JSON array of service offers
  --peer MULTIADDR    dial this peer at start (repeatable)
  --metrics-port N    port of the /metrics, /report and /health server on 127.0.0.1
                      (default 9464; 0 picks a free one)
  --no-metrics        no metrics server
  --log-level LEVEL   debug, info (default), warn or error
  -h, --help          this help
`,
  lookup: `Usage: trustflow-node lookup <query> --peer MULTIADDR [--timeout MS] [--json]

Joins the network through --peer, asks the lookup topic for offers matching <query> (every word
must match the offer's id, name, description or tags) and prints the offers sent back.

Options:
  --peer MULTIADDR    a node to join through (repeatable; required)
  --timeout MS        how long to collect answers (default 3000)
  --json              print JSON instead of a table
  -h, --help          this help
`,
  'send-file': `Usage: trustflow-node send-file <multiaddr> <file> [--job-id N] [--workflow-id N]

Sends <file> to the node at <multiaddr> (with /p2p/<peer id>) as a file message (type 3), shows
progress, then waits for the receiver's receipt and compares its SHA-256 with ours. Exits 0 when
the checksums match.

Options:
  --workflow-id N     workflow id in the header (default 0)
  --job-id N          job id in the header (default: a fresh one)
  --interface-id N    interface id in the header (default 0)
  -h, --help          this help
`,
};

class UsageError extends Error {}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

function makeLogger(io: CliIo, minimum: (typeof LEVELS)[number]) {
  const floor = LEVELS.indexOf(minimum);
  return (level: (typeof LEVELS)[number], message: string, fields?: Record<string, unknown>) => {
    if (LEVELS.indexOf(level) < floor) return;
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
    io.stderr.write(`${new Date().toISOString()} ${level} ${message}${extra}\n`);
  };
}

function int(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} must be an integer, got "${value}"`);
  return n;
}

/** Runs the CLI; resolves to the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      io.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    }
    if (!(command in HELP)) throw new UsageError(`unknown command "${command}"`);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(HELP[command]!);
      return 0;
    }
    switch (command) {
      case 'start':
        return await start(rest, io);
      case 'lookup':
        return await lookup(rest, io);
      default:
        return await sendFile(rest, io);
    }
  } catch (error) {
    if (
      error instanceof UsageError ||
      (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      io.stderr.write(`trustflow-node: ${(error as Error).message}\n`);
      io.stderr.write(
        `Run trustflow-node ${command && command in HELP ? `${command} ` : ''}--help for usage.\n`,
      );
      return 2;
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`trustflow-node: config: ${error.message}\n`);
      return 2;
    }
    io.stderr.write(`trustflow-node: ${(error as Error).message ?? String(error)}\n`);
    return 1;
  }
}

async function start(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      offers: { type: 'string' },
      peer: { type: 'string', multiple: true },
      'log-level': { type: 'string', default: 'info' },
      'metrics-port': { type: 'string' },
      'no-metrics': { type: 'boolean', default: false },
    },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values['no-metrics'] && values['metrics-port'] !== undefined) {
    throw new UsageError('--metrics-port and --no-metrics exclude each other');
  }
  const level = values['log-level'] as (typeof LEVELS)[number];
  if (!LEVELS.includes(level))
    throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`);
  const fromFile: Partial<NodeConfig> = values.config ? await loadConfigFile(values.config) : {};
  const flags: Partial<NodeConfig> = validateConfig({
    port: int(values.port, '--port'),
    host: values.host,
    dataDir: values['data-dir'],
    offersFile: values.offers,
    peers: values.peer,
  });
  const metricsPort = int(values['metrics-port'], '--metrics-port');
  const options: TrustflowNodeOptions = {
    dataDir: join(homedir(), '.trustflow-node'),
    metrics: { host: '127.0.0.1', port: 9464 },
    instrument: true,
    ...fromFile,
    ...flags,
    logger: makeLogger(io, level),
  };
  if (metricsPort !== undefined) {
    options.metrics = validateConfig({ metrics: { host: '127.0.0.1', port: metricsPort } }).metrics;
  }
  if (values['no-metrics']) options.metrics = undefined;
  const node = await createTrustflowNode(options);
  const addresses = node.multiaddrs();
  io.stdout.write(`peer id ${node.peerId}\n`);
  for (const address of addresses) io.stdout.write(`listening on ${address}\n`);
  if (node.metricsUrl) io.stdout.write(`metrics on ${node.metricsUrl}/metrics\n`);
  io.onListening?.(addresses);
  await new Promise<void>((resolve) => {
    if (!io.signal || io.signal.aborted) {
      if (io.signal?.aborted) resolve();
      return;
    }
    io.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const result = await node.stop();
  io.stdout.write(
    `stopped in ${Math.round(result.elapsedMs)} ms (${result.drained ? 'drained' : `${result.aborted} streams aborted`})\n`,
  );
  return 0;
}

async function ephemeral(io: CliIo, peers: string[]) {
  return createTrustflowNode({
    port: 0,
    peers,
    logger: makeLogger(io, 'warn'),
  });
}

async function lookup(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      peer: { type: 'string', multiple: true },
      timeout: { type: 'string', default: '3000' },
      json: { type: 'boolean', default: false },
    },
  });
  const query = positionals.join(' ').trim();
  if (!query) throw new UsageError('lookup needs a <query>');
  const peers = values.peer ?? [];
  if (peers.length === 0) throw new UsageError('lookup needs --peer MULTIADDR to join the network');
  const timeoutMs = int(values.timeout, '--timeout')!;
  const node = await ephemeral(io, peers);
  try {
    if (node.stats().connections === 0) throw new Error('could not reach any --peer');
    const found = await node.lookup(query, { timeoutMs });
    if (values.json) {
      io.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
    } else if (found.length === 0) {
      io.stdout.write(`no offers match "${query}"\n`);
    } else {
      for (const { peerId, offer } of found) {
        const tags = offer.tags?.length ? ` [${offer.tags.join(', ')}]` : '';
        const price = offer.price ? ` (${offer.price})` : '';
        io.stdout.write(`${offer.id}\t${offer.name}${price}${tags}\tfrom ${peerId}\n`);
      }
    }
    return 0;
  } finally {
    await node.stop();
  }
}

const MiB = 1024 * 1024;

/** A one-line progress bar; redrawn in place on a terminal, every 10 % otherwise. */
export function progressBar(io: CliIo['stderr']) {
  const started = performance.now();
  let lastTenth = -1;
  return {
    update({ bytes, total }: TransferProgress) {
      const fraction = total === 0 ? 1 : bytes / total;
      const seconds = Math.max((performance.now() - started) / 1000, 0.001);
      const width = 30;
      const filled = Math.round(fraction * width);
      const line =
        `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
        `${(bytes / MiB).toFixed(1)}/${(total / MiB).toFixed(1)} MiB ${(bytes / MiB / seconds).toFixed(1)} MiB/s`;
      if (io.isTTY) {
        io.write(`\r${line}`);
        if (bytes >= total) io.write('\n');
        return;
      }
      const tenth = Math.floor(fraction * 10);
      if (tenth !== lastTenth) {
        lastTenth = tenth;
        io.write(`${line}\n`);
      }
    },
  };
}

async function sendFile(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'workflow-id': { type: 'string' },
      'job-id': { type: 'string' },
      'interface-id': { type: 'string' },
    },
  });
  const [target, file, ...extra] = positionals;
  if (!target || !file) throw new UsageError('send-file needs <multiaddr> and <file>');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (!target.startsWith('/') || !target.includes('/p2p/')) {
    throw new UsageError(`"${target}" is not a multiaddr with /p2p/<peer id>`);
  }
  const node = await ephemeral(io, []);
  try {
    const bar = progressBar(io.stderr);
    const result = await node.sendFile(target, file, {
      workflowId: int(values['workflow-id'], '--workflow-id'),
      jobId: int(values['job-id'], '--job-id'),
      interfaceId: int(values['interface-id'], '--interface-id'),
      onProgress: (p) => bar.update(p),
    });
    if (result.bytes === 0) bar.update({ bytes: 0, total: 0 });
    io.stdout.write(`sent ${result.bytes} bytes, sha256 ${result.sha256}\n`);
    if (result.verified) {
      io.stdout.write('receiver confirmed the checksum\n');
      return 0;
    }
    io.stdout.write(
      result.remoteSha256
        ? `checksum MISMATCH: receiver has ${result.remoteSha256}\n`
        : 'no receipt from the receiver: checksum not confirmed\n',
    );
    return 1;
  } finally {
    await node.stop();
  }
}
