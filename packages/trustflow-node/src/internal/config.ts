import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Deadlines, NodeConfig, ServiceOffer, TrustflowNodeOptions } from '../types.js';
import { MAX_CHUNK_BYTES } from './protocol.js';

export const DEFAULT_DEADLINES: Deadlines = {
  dialMs: 60_000,
  newStreamMs: 10_000,
  messageMs: 60_000,
  fileMs: 5 * 3_600_000,
  inboundMs: 10 * 60_000,
  idleMs: 30_000,
  replyMs: 60_000,
  drainMs: 5_000,
  stopMs: 10_000,
};

export const DEFAULT_CONFIG: NodeConfig = {
  port: 30609,
  host: '127.0.0.1',
  offers: [],
  peers: [],
  workers: 10,
  dispatchTimeoutMs: 50,
  offerTtlMs: 3_600_000,
  maxCachedOffers: 10_000,
  maxConnections: 400,
  maxFileBytes: 4 * 1024 ** 3,
  chunkBytes: 64 * 1024,
  monitorIntervalMs: 30_000,
  instrument: false,
  deadlines: DEFAULT_DEADLINES,
};

/** A configuration error; the message names the field (and the file when there is one). */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

type Check = (value: unknown, field: string) => unknown;

function fail(field: string, expected: string, value: unknown): never {
  throw new ConfigError(field, `field "${field}" must be ${expected}, got ${show(value)}`);
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (value, field) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      fail(field, `an integer from ${min} to ${max}`, value);
    }
    return value;
  };

const string: Check = (value, field) => {
  if (typeof value !== 'string' || value.length === 0) fail(field, 'a non-empty string', value);
  return value;
};

const stringList: Check = (value, field) => {
  if (!Array.isArray(value)) fail(field, 'an array of strings', value);
  value.forEach((item, i) => {
    string(item, `${field}[${i}]`);
  });
  return value;
};

function object(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(field, 'an object', value);
  }
  return value as Record<string, unknown>;
}

function checkFields(
  value: Record<string, unknown>,
  prefix: string,
  checks: Record<string, Check>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const field = prefix ? `${prefix}.${key}` : key;
    const check = checks[key];
    if (!check) {
      throw new ConfigError(
        field,
        `unknown field "${field}" (known: ${Object.keys(checks).join(', ')})`,
      );
    }
    if (item === undefined) continue;
    out[key] = check(item, field);
  }
  return out;
}

const offer: Check = (value, field) => {
  const o = checkFields(object(value, field), field, {
    id: string,
    name: string,
    description: (v, f) => (typeof v === 'string' ? v : fail(f, 'a string', v)),
    tags: stringList,
    price: (v, f) => (typeof v === 'string' ? v : fail(f, 'a string', v)),
  });
  if (o.id === undefined) throw new ConfigError(`${field}.id`, `field "${field}.id" is required`);
  if (o.name === undefined) {
    throw new ConfigError(`${field}.name`, `field "${field}.name" is required`);
  }
  return o;
};

export const offerList: Check = (value, field) => {
  if (!Array.isArray(value)) fail(field, 'an array of offers', value);
  const ids = new Set<string>();
  return value.map((item, i) => {
    const o = offer(item, `${field}[${i}]`) as unknown as ServiceOffer;
    if (ids.has(o.id)) {
      throw new ConfigError(
        `${field}[${i}].id`,
        `field "${field}[${i}].id" repeats id ${show(o.id)}`,
      );
    }
    ids.add(o.id);
    return o;
  });
};

const positive = integer(1);
const deadlineChecks: Record<keyof Deadlines, Check> = {
  dialMs: positive,
  newStreamMs: positive,
  messageMs: positive,
  fileMs: positive,
  inboundMs: positive,
  idleMs: positive,
  replyMs: positive,
  drainMs: integer(0),
  stopMs: positive,
};

const hostCheck: Check = (value, field) => {
  string(value, field);
  if (!/^[\d.]+$|^[\da-f:]+$/i.test(value as string)) fail(field, 'an IP address', value);
  return value;
};

const topChecks: Record<string, Check> = {
  port: integer(0, 65_535),
  host: hostCheck,
  dataDir: string,
  offersFile: string,
  offers: offerList,
  peers: stringList,
  workers: integer(1, 1_000),
  dispatchTimeoutMs: integer(1, 60_000),
  offerTtlMs: positive,
  maxCachedOffers: positive,
  maxConnections: positive,
  maxFileBytes: positive,
  chunkBytes: integer(1, MAX_CHUNK_BYTES),
  monitorIntervalMs: integer(100),
  instrument: (value, field) =>
    typeof value === 'boolean' ? value : fail(field, 'true or false', value),
  metrics: (value, field) =>
    checkFields(object(value, field), field, { host: hostCheck, port: integer(0, 65_535) }),
  deadlines: (value, field) => checkFields(object(value, field), field, deadlineChecks),
};

/** Validates a parsed config object (the config file's content). Throws ConfigError. */
export function validateConfig(value: unknown): Partial<NodeConfig> {
  return checkFields(object(value, '(top level)'), '', topChecks) as Partial<NodeConfig>;
}

/** Reads and validates a JSON config file; relative paths in it are relative to the file. */
export async function loadConfigFile(path: string): Promise<Partial<NodeConfig>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError('(file)', `${path}: cannot read: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('(file)', `${path}: not valid JSON: ${(error as Error).message}`);
  }
  let config: Partial<NodeConfig>;
  try {
    config = validateConfig(parsed);
  } catch (error) {
    if (error instanceof ConfigError)
      throw new ConfigError(error.field, `${path}: ${error.message}`);
    throw error;
  }
  const base = dirname(resolve(path));
  if (config.dataDir && !isAbsolute(config.dataDir)) config.dataDir = resolve(base, config.dataDir);
  if (config.offersFile && !isAbsolute(config.offersFile)) {
    config.offersFile = resolve(base, config.offersFile);
  }
  return config;
}

/** Reads the offers file (a JSON array of offers). */
export async function loadOffersFile(path: string): Promise<ServiceOffer[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new ConfigError('offersFile', `offers file ${path}: ${(error as Error).message}`);
  }
  try {
    return offerList(parsed, 'offers') as ServiceOffer[];
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new ConfigError(error.field, `offers file ${path}: ${error.message}`);
    }
    throw error;
  }
}

/** Options (programmatic or from file + flags) merged over the defaults, validated. */
export function resolveConfig(options: TrustflowNodeOptions): NodeConfig {
  const {
    tracker: _t,
    meter: _m,
    logger: _l,
    onServiceRequest: _s,
    handlers: _h,
    ...plain
  } = options;
  const checked = validateConfig(plain);
  return {
    ...DEFAULT_CONFIG,
    ...checked,
    deadlines: { ...DEFAULT_DEADLINES, ...(checked.deadlines ?? {}) },
  };
}
