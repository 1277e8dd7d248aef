import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  decodeHeader,
  encodeHeader,
  HEADER_SIZE,
  loadConfigFile,
  MessageType,
  type ProtocolError,
  validateConfig,
} from '../src/index.js';

const sample = {
  type: MessageType.JobRunStatus,
  peerId: '12D3KooWExample',
  orderingPeerId: '12D3KooWOther',
  workflowId: 1,
  jobId: -2,
  interfaceId: 2 ** 40,
};

describe('header codec', () => {
  it('round-trips a fixed-size big-endian header', () => {
    const bytes = encodeHeader(sample);
    expect(bytes.length).toBe(HEADER_SIZE);
    expect(HEADER_SIZE).toBe(536);
    expect([bytes[0], bytes[1]]).toEqual([0, 7]);
    expect(decodeHeader(bytes)).toEqual(sample);
  });

  it('names what is wrong with a bad header', () => {
    const reason = (bytes: Uint8Array) => {
      try {
        decodeHeader(bytes);
      } catch (error) {
        return (error as ProtocolError).reason;
      }
      return 'ok';
    };
    const bytes = encodeHeader(sample);
    expect(reason(bytes.subarray(0, 100))).toBe('truncated-header');
    const obsolete = bytes.slice();
    obsolete[1] = 2;
    expect(reason(obsolete)).toBe('obsolete-type');
    const unknown = bytes.slice();
    unknown[0] = 1;
    expect(reason(unknown)).toBe('unknown-type');
    const unpadded = bytes.slice();
    unpadded[200] = 65;
    expect(reason(unpadded)).toBe('bad-header');
    expect(() => encodeHeader({ ...sample, peerId: 'x'.repeat(256) })).toThrow(
      'header field peerId is 256 bytes, at most 255',
    );
    expect(() => encodeHeader({ ...sample, jobId: 1.5 })).toThrow('header field jobId');
  });
});

describe('config validation', () => {
  it('names the field that is wrong', () => {
    const message = (value: unknown) => {
      try {
        validateConfig(value);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
      return 'ok';
    };
    expect(message({ port: 70_000 })).toBe(
      'field "port" must be an integer from 0 to 65535, got 70000',
    );
    expect(message({ deadlines: { dialMs: 'soon' } })).toBe(
      'field "deadlines.dialMs" must be an integer from 1 to 9007199254740991, got "soon"',
    );
    expect(message({ prot: 1 })).toMatch(/^unknown field "prot" \(known: port, host/);
    expect(
      message({
        offers: [
          { id: 'a', name: 'A' },
          { id: 'a', name: 'B' },
        ],
      }),
    ).toBe('field "offers[1].id" repeats id "a"');
    expect(message({ offers: [{ id: 'a' }] })).toBe('field "offers[0].name" is required');
    expect(message({ host: 'example.com' })).toBe(
      'field "host" must be an IP address, got "example.com"',
    );
    expect(message({ port: 1, workers: 4, deadlines: { idleMs: 5 } })).toBe('ok');
  });

  it('reads a file, naming the file in errors and resolving relative paths', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tf-config-'));
    const good = join(dir, 'good.json');
    await writeFile(good, JSON.stringify({ port: 0, dataDir: 'data', offersFile: 'offers.json' }));
    expect(await loadConfigFile(good)).toEqual({
      port: 0,
      dataDir: join(dir, 'data'),
      offersFile: join(dir, 'offers.json'),
    });
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ workers: 0 }));
    await expect(loadConfigFile(bad)).rejects.toThrow(
      `${bad}: field "workers" must be an integer from 1 to 1000, got 0`,
    );
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{ "port": ');
    await expect(loadConfigFile(broken)).rejects.toThrow(`${broken}: not valid JSON`);
  });
});
