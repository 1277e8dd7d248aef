import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Report } from '@trustflow/core';
import { afterAll, beforeAll } from 'vitest';

/** The built preload (tests run against dist: `tsc -b` first). */
export const PRELOAD = fileURLToPath(new URL('../dist/register.js', import.meta.url));
export const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
export const NODE24 = process.execPath;
const node22Path = join(tmpdir(), 'trustflow-node22', 'node_modules', '.bin', 'node');
/** The Node 22 binary of COMMON.md / .ci/run, when installed. */
export const NODE22 = existsSync(node22Path) ? node22Path : undefined;

export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Environment for a child: no inherited Trustflow/OTel settings, metrics on a free port. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('TRUSTFLOW_') && !k.startsWith('OTEL_') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  env.OTEL_EXPORTER_PROMETHEUS_PORT = '0';
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Kills what a test left running (call from afterEach). */
export async function killChildren(): Promise<void> {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  children.clear();
}

export interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first stdout line matching `pattern` (an event, not a poll). */
  line(pattern: RegExp): Promise<string>;
  exited: Promise<Run>;
}

export function start(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Started {
  const child = spawn(command, args, {
    env: options.env ?? cleanEnv(),
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      const line = out.split('\n').find((l) => w.pattern.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  child.stdout!.on('data', (d) => {
    out += d;
    check();
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<Run>((resolve) => {
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    line(pattern) {
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        check();
        void exited.then((r) =>
          reject(
            new Error(
              `process ended (${r.code ?? r.signal}) before printing ${pattern}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
            ),
          ),
        );
      });
    },
    exited,
  };
}

/** Runs to the end (killed after `timeoutMs`, which fails the assertions that follow). */
export async function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<Run> {
  const started = start(command, args, options);
  const timer = setTimeout(() => started.child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  const result = await started.exited;
  clearTimeout(timer);
  return result;
}

export async function tempDir(
  prefix = 'tf-instrument-',
): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export async function readReport(path: string): Promise<Report> {
  const report = JSON.parse(await readFile(path, 'utf8')) as Report;
  if (report.schema !== 'trustflow.report/v1') throw new Error(`${path} is not a report`);
  return report;
}

/**
 * Runs `node args` with the exit report written to a temporary file (TRUSTFLOW_REPORT=exit, every
 * stack, no metrics; `env` on top) and returns the run and that report.
 */
export async function runForReport(
  node: string,
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs?: number,
): Promise<{ result: Run; report: Report }> {
  const dir = await tempDir();
  try {
    const file = join(dir.path, 'report.json');
    const result = await run(node, args, {
      env: cleanEnv({
        TRUSTFLOW_REPORT: 'exit',
        TRUSTFLOW_REPORT_FILE: file,
        TRUSTFLOW_STACKS: 'all',
        OTEL_METRICS_EXPORTER: 'none',
        ...env,
      }),
      timeoutMs,
    });
    return { result, report: await readReport(file) };
  } finally {
    await dir.remove();
  }
}

/** An HTTP server on 127.0.0.1 answering "ok", for the tests of the calling file. */
export function useHttpServer(): { readonly port: number } {
  const state = { port: 0 };
  const server = createHttpServer((_req, res) => res.end('ok'));
  beforeAll(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    state.port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return state;
}

/** 1-based line of the first line of `file` containing `marker`. */
export async function lineOf(file: string, marker: string): Promise<number> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  const index = lines.findIndex((l) => l.includes(marker));
  if (index < 0) throw new Error(`${marker} not in ${file}`);
  return index + 1;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The Trustflow warning lines of a run's stderr. */
export function warnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('trustflow: '));
}

/**
 * Retries `attempt` until it returns a value (not undefined) or `timeoutMs` passes. Only for
 * outside services with no event to wait on (an HTTP endpoint coming up, a Prometheus query).
 */
export async function eventually<T>(
  attempt: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** GET `url`: status and body. */
export async function get(
  url: string,
): Promise<{ status: number; body: string; headers: Headers }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: response.status, body: await response.text(), headers: response.headers };
}
