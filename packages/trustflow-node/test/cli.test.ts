import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../src/internal/cli-main.js';
import { startNode, stopAll } from './helpers.js';

afterEach(stopAll);

function io(extra: Partial<CliIo> = {}) {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: (t: string) => (err += t) },
      ...extra,
    } as CliIo,
    out: () => out,
    err: () => err,
  };
}

const BIN = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

describe('trustflow-node CLI', () => {
  it('prints help for every command', async () => {
    for (const argv of [
      ['--help'],
      ['start', '--help'],
      ['lookup', '-h'],
      ['send-file', '--help'],
    ]) {
      const c = io();
      expect(await runCli(argv, c.io)).toBe(0);
      expect(c.out()).toMatch(/^Usage: trustflow-node/);
    }
    const c = io();
    expect(await runCli(['frobnicate'], c.io)).toBe(2);
    expect(c.err()).toContain('unknown command "frobnicate"');
  });

  it('rejects a config file naming the bad field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tf-cli-'));
    const file = join(dir, 'node.json');
    await writeFile(file, JSON.stringify({ port: 1, deadlines: { idleMs: -1 } }));
    const c = io();
    expect(await runCli(['start', '--config', file], c.io)).toBe(2);
    expect(c.err()).toBe(
      `trustflow-node: config: ${file}: field "deadlines.idleMs" must be an integer from 1 to 9007199254740991, got -1\n`,
    );
  });

  it('starts a node, answers lookup and send-file commands, and stops on the signal', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tf-cli-'));
    const offers = join(dir, 'offers.json');
    await writeFile(offers, JSON.stringify([{ id: 'cpu-1', name: 'CPU batch', tags: ['cpu'] }]));
    const controller = new AbortController();
    const listening = Promise.withResolvers<string[]>();
    const server = io({ signal: controller.signal, onListening: listening.resolve });
    const running = runCli(
      [
        'start',
        '--port',
        '0',
        '--data-dir',
        join(dir, 'data'),
        '--offers',
        offers,
        '--log-level',
        'warn',
        '--metrics-port',
        '0',
      ],
      server.io,
    );
    const [address] = await listening.promise;

    const found = io();
    expect(await runCli(['lookup', 'cpu', '--peer', address!, '--timeout', '800'], found.io)).toBe(
      0,
    );
    expect(found.out()).toMatch(/^cpu-1\tCPU batch \[cpu\]\tfrom 12D3KooW/);

    const file = join(dir, 'data.bin');
    await writeFile(file, Buffer.alloc(300_000, 1));
    const sent = io();
    expect(await runCli(['send-file', address!, file, '--job-id', '5'], sent.io)).toBe(0);
    expect(sent.out()).toContain('sent 300000 bytes, sha256 ');
    expect(sent.out()).toContain('receiver confirmed the checksum');
    expect(sent.err()).toContain('100% 0.3/0.3 MiB');

    const metricsUrl = /metrics on (\S+)\/metrics/.exec(server.out())![1]!;
    expect(await (await fetch(`${metricsUrl}/health`)).json()).toMatchObject({ ok: true });

    controller.abort();
    expect(await running).toBe(0);
    expect(server.out()).toMatch(/stopped in \d+ ms \(drained\)/);
  });

  it('the binary exits by itself after send-file: nothing is left open', async () => {
    const target = await startNode();
    const file = join(target.dataDir, 'x.bin');
    await writeFile(file, Buffer.alloc(70_000, 2));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BIN, 'send-file', target.address, file],
      {
        timeout: 20_000,
      },
    );
    expect(stdout).toContain('receiver confirmed the checksum');
  });
});
