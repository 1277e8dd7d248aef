import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

const cleanups: (() => unknown)[] = [];

/** Registers something to undo after the test (leaked resources the test made on purpose). */
export function later(fn: () => unknown): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup, last first (call from afterEach). */
export async function cleanup(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await fn();
}

/** `file:line` of the line of `file` holding `marker` (a `// MARK:name` comment). */
export function siteOf(fileUrl: string, marker: string): string {
  const file = fileURLToPath(fileUrl);
  const lines = readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((l) => l.includes(`// MARK:${marker}`));
  if (index < 0) throw new Error(`no MARK:${marker} in ${file}`);
  return `${file}:${index + 1}:`;
}

/** A loopback server that accepts and keeps connections; closed (with them) after the test. */
export async function server(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const s = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  later(async () => {
    for (const socket of sockets) socket.destroy();
    s.close();
    await once(s, 'close');
  });
  return { server: s, port: (s.address() as { port: number }).port, sockets };
}
