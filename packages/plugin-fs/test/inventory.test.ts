import { once } from 'node:events';
import fs from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FdInventory } from '../src/index.js';
import { type Fixture, setup } from './helpers.js';

// Captured before any plugin is enabled: opening through these is an untracked path, like a
// native addon's.
const rawOpenSync = fs.openSync;
const rawCloseSync = fs.closeSync;

const onLinux = fs.existsSync('/proc/self/fd');

let f: Fixture;
let file: string;
beforeEach(() => {
  f = setup();
  file = join(f.dir, 'data.txt');
  fs.writeFileSync(file, 'x');
});
afterEach(async () => {
  await f.cleanup();
});

const inventory = (fixture = f) =>
  fixture.tracker.report().extra?.fdInventory as FdInventory | null | undefined;

async function untrackedMetric(type: string): Promise<number | undefined> {
  const metric = await f.metrics.find('trustflow.fd.untracked');
  return metric?.dataPoints.find((p) => p.attributes['trustflow.fd.type'] === type)?.value as
    | number
    | undefined;
}

describe.runIf(onLinux)('fd inventory (Linux)', () => {
  it('finds a descriptor opened outside the plugin, in the report and the metric', async () => {
    const before = inventory()!;
    const tracked = fs.openSync(file, 'r');
    const raw = rawOpenSync(file, 'r');
    try {
      const after = inventory()!;
      expect(after.untracked.file).toBe(before.untracked.file + 1);
      expect(after.tracked).toBe(before.tracked + 1);
      expect(after.descriptors).toContainEqual({
        fd: raw,
        type: 'file',
        target: file,
        openAtEnable: false,
      });
      expect(after.descriptors.map((d) => d.fd)).not.toContain(tracked);
      // the listing's own descriptor is never reported
      expect(after.descriptors.map((d) => d.target).filter((t) => t.includes('/fd'))).toEqual([]);
      expect(await untrackedMetric('file')).toBe(after.untracked.file);
      // newest first: descriptors opened since enable come before the ones that were there
      expect(after.descriptors[0]?.openAtEnable).toBe(false);
    } finally {
      rawCloseSync(raw);
      fs.closeSync(tracked);
    }
    expect(inventory()!.untracked.file).toBe(before.untracked.file);
  });

  it('lists a descriptor that was open before the plugin was enabled', async () => {
    const early = rawOpenSync(file, 'r');
    const late = setup();
    try {
      expect(inventory(late)!.descriptors).toContainEqual({
        fd: early,
        type: 'file',
        target: file,
        openAtEnable: true,
      });
    } finally {
      rawCloseSync(early);
      await late.cleanup();
    }
  });

  it('counts sockets by type, and not the ones another plugin registered as tracked', async () => {
    const server: Server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = connect((server.address() as { port: number }).port, '127.0.0.1');
    await once(client, 'connect');
    const [peer] = await accepted;
    const fdOf = (s: Socket | Server) => (s as unknown as { _handle: { fd: number } })._handle.fd;
    const sockets = [fdOf(server), fdOf(client), fdOf(peer)];
    try {
      const listed = inventory()!.descriptors.filter((d) => sockets.includes(d.fd));
      expect(listed.map((d) => d.type)).toEqual(['socket', 'socket', 'socket']);
      const registry = (globalThis as Record<symbol, Set<(add: (fd: number) => void) => void>>)[
        Symbol.for('trustflow.fd-providers')
      ]!;
      const provider = (add: (fd: number) => void) => {
        for (const fd of sockets) add(fd);
      };
      registry.add(provider);
      try {
        const after = inventory()!;
        expect(after.descriptors.filter((d) => sockets.includes(d.fd))).toEqual([]);
      } finally {
        registry.delete(provider);
      }
    } finally {
      client.destroy();
      peer.destroy();
      server.close();
    }
  });

  it('can be turned off', async () => {
    const off = setup({ inventory: false });
    try {
      expect(off.tracker.report().extra?.fdInventory).toBeUndefined();
      expect(await off.metrics.find('trustflow.fd.untracked')).toBeUndefined();
    } finally {
      await off.cleanup();
    }
  });
});

describe('options', () => {
  it('rejects bad options with a one-line error naming the option', async () => {
    const { fsPlugin } = await import('../src/index.js');
    expect(() => fsPlugin({ inventory: 'yes' as never })).toThrow(
      /^fsPlugin: option inventory must be a boolean, got yes$/,
    );
    expect(() => fsPlugin({ inventoryLimit: -1 })).toThrow(/option inventoryLimit/);
    expect(() => fsPlugin(42 as never)).toThrow(/options must be an object/);
  });

  it('limits the listed descriptors', async () => {
    const limited = setup({ inventoryLimit: 1 });
    const raws = [rawOpenSync(file, 'r'), rawOpenSync(file, 'r')];
    try {
      const section = inventory(limited)!;
      expect(section.descriptors).toHaveLength(1);
      expect(section.omitted).toBe(Object.values(section.untracked).reduce((a, b) => a + b, 0) - 1);
    } finally {
      for (const fd of raws) rawCloseSync(fd);
      await limited.cleanup();
    }
  });
});
