import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, it } from 'vitest';

let server: Server;
let port = 0;
beforeAll(async () => {
  server = createServer((s) => s.on('error', () => {})).listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});
afterAll(() => {
  server.close();
});

describe('sync tests', () => {
  for (let i = 0; i < 100; i++) {
    it(`computes ${i}`, () => {
      let x = 0;
      for (let j = 0; j < 1000; j++) x += j;
      if (x < 0) throw new Error('impossible');
    });
  }
});

describe('socket tests', () => {
  for (let i = 0; i < 100; i++) {
    it(`connects ${i}`, async () => {
      const socket = connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.destroy();
    });
  }
});
