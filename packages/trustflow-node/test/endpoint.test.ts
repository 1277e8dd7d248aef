import { writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { plainNode, startNode, stopAll } from './helpers.js';

afterEach(stopAll);

/** GET without keep-alive: the test's own client socket is closed when the answer is read. */
function fetchOnce(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    }).on('error', reject);
  });
}

describe('metrics, report and health endpoint; plugins on', () => {
  it('serves /metrics, /report and /health on loopback, and leaves nothing open after stop', async () => {
    // no tracker given: the node makes its own, reporting to the endpoint's meter
    const a = await startNode({
      tracker: undefined,
      instrument: true,
      metrics: { host: '127.0.0.1', port: 0 },
      offers: [{ id: 'o1', name: 'thing' }],
    });
    const url = a.node.metricsUrl!;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const b = await startNode();
    const file = join(b.dataDir, 'f.bin');
    await writeFile(file, Buffer.alloc(200_000, 3));
    expect((await b.node.sendFile(a.address, file)).verified).toBe(true);
    expect(await b.node.lookup('thing', { timeoutMs: 5_000, peers: 1 })).toHaveLength(1);

    const health = await fetchOnce(`${url}/health`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.text)).toMatchObject({
      ok: true,
      status: 'running',
      peerId: a.node.peerId,
      pid: process.pid,
      connections: 1,
      activeStreams: 0,
    });
    const metrics = (await fetchOnce(`${url}/metrics`)).text;
    expect(metrics).toMatch(
      /^trustflow_resource_opened_total\{direction="inbound",trustflow_resource_kind="trustflow_node.exchange"[^}]*\} [1-9]/m,
    );
    expect(metrics).toMatch(
      /^trustflow_resource_opened_total\{trustflow_resource_kind="fs.filehandle"[^}]*\} [1-9]/m,
    );
    expect(metrics).toMatch(
      /^trustflow_node_message_served(_total)?\{trustflow_message_type="File"[^}]*\} 1/m,
    );
    expect(metrics).toMatch(/^v8js_memory_heap_used\{/m);
    const report = JSON.parse((await fetchOnce(`${url}/report`)).text);
    expect(report).toMatchObject({ schema: 'trustflow.report/v1', pid: process.pid });
    expect((await fetchOnce(`${url}/debug/pprof`)).status).toBe(404);

    // everything else in this process first, so that only the node's own resources remain
    await b.node.stop();
    const result = await a.node.stop();
    expect(result.drained).toBe(true);
    await expect(fetchOnce(`${url}/health`)).rejects.toThrow('ECONNREFUSED');
    expect(result.leftOpen).toEqual([]);
  });

  it('answers 503 on /health while stopping', async () => {
    const a = await startNode({ metrics: { host: '127.0.0.1', port: 0 } });
    const client = await plainNode();
    void client;
    const stopping = a.node.stop();
    expect(a.node.health()).toMatchObject({ ok: false, status: 'stopping' });
    await stopping;
  });
});
