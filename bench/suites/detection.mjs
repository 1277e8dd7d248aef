// Detection matrix: each leak fixture (bench/fixtures/<name>.mjs) runs twice under each tool,
// leaking and clean, in its own process (bench/fixtures/run.mjs). For every tool we record
// whether it reports the leak, whether it names a line inside the fixture's leak region (the
// lines between `// leak:start` and `// leak:end`), and whether it reports anything on the clean
// twin that the clean twin closed (a false positive).
//
// How each tool is read:
// - ours: the @trustflow/instrument preload with TRUSTFLOW_REPORT=exit and TRUSTFLOW_REPORT_FILE
//   (defaults otherwise: sampled stacks), the JSON report's leak groups; the line is the group's
//   `site` (its first user frame).
// - why-is-node-running: what why() prints at the checkpoint (handle type + user frames).
// - wtfnode: what dump() prints at the checkpoint (sections, with callsites where it has them).
// - vitest --detectAsyncLeaks and jest --detectOpenHandles (native ESM, --experimental-vm-modules):
//   each fixture and mode as a test file, one run of each runner.
// The harness's own frames (bench/fixtures/run.mjs) and stdio are not counted for any tool.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { root } from '../lib.mjs';

export const title = 'detection matrix: leak fixtures and their clean twins under each tool';

const bench = join(root, 'bench');
const fixturesDir = join(bench, 'fixtures');
const harness = join(fixturesDir, 'run.mjs');
const leakTestHarness = join(fixturesDir, 'leak-test.mjs');

/** The fixtures, and under which name each tool reports that kind of resource. */
export const FIXTURES = [
  { name: 'fd', kinds: { ours: ['fs.fd'] } },
  {
    name: 'filehandle',
    kinds: { ours: ['fs.filehandle'], why: ['FILEHANDLE'], vitest: ['FILEHANDLE'] },
  },
  {
    name: 'client-socket',
    kinds: { ours: ['net.socket'], why: ['TCPWRAP'], wtfnode: ['Sockets'], vitest: ['TCPWRAP'] },
  },
  {
    name: 'server-socket',
    kinds: { ours: ['net.socket'], why: ['TCPWRAP'], wtfnode: ['Sockets'], vitest: ['TCPWRAP'] },
  },
  {
    name: 'listening-server',
    kinds: {
      ours: ['net.server'],
      why: ['TCPSERVERWRAP'],
      wtfnode: ['Servers'],
      vitest: ['TCPSERVERWRAP'],
    },
  },
  {
    name: 'timer',
    kinds: {
      ours: ['timer'],
      why: ['Timeout'],
      wtfnode: ['Intervals', 'Timers'],
      vitest: ['Timeout'],
    },
  },
  { name: 'libp2p-stream', kinds: { ours: ['libp2p.stream'] } },
  { name: 'pooled-buffer', kinds: { ours: ['buffer_pool.buffer'] } },
  { name: 'growing-heap', kinds: { 'leak-test': ['heap'] } },
];

export const TOOLS = [
  { id: 'ours', label: 'ours (preload exit report)' },
  { id: 'leak-test', label: 'ours (@trustflow/leak-test)' },
  { id: 'why', label: 'why-is-node-running' },
  { id: 'wtfnode', label: 'wtfnode' },
  { id: 'vitest', label: 'vitest --detectAsyncLeaks' },
  { id: 'jest', label: 'jest --detectOpenHandles' },
];

/** The leak region of a fixture: [first, last] line numbers strictly between the markers. */
/** Kinds as a tool names them; jest and vitest both print async_hooks resource types. */
function kindsOf(fixture, tool) {
  if (tool === 'jest') return fixture.kinds.vitest ?? [];
  // @trustflow/leak-test names kinds as the preload does
  if (tool === 'leak-test') return fixture.kinds['leak-test'] ?? fixture.kinds.ours ?? [];
  return fixture.kinds[tool] ?? [];
}

function region(name) {
  const lines = readFileSync(join(fixturesDir, `${name}.mjs`), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.includes('// leak:start'));
  const end = lines.findIndex((l) => l.includes('// leak:end'));
  if (start < 0 || end < 0) throw new Error(`fixture ${name} has no leak:start/leak:end markers`);
  return { file: join(fixturesDir, `${name}.mjs`), first: start + 2, last: end };
}

const LOCATION = /(?:file:\/\/)?((?:\/|[\w.-]+\/)[^\s:()]*\.[cm]?[jt]s):(\d+)/g;

/** Every file:line in a text, with relative paths resolved against `base` (the child's cwd). */
function locations(text, base = bench) {
  const out = [];
  for (const m of text.matchAll(LOCATION)) {
    const file = m[1].startsWith('/') ? m[1] : resolve(base, m[1]);
    out.push({ file, line: Number(m[2]) });
  }
  return out;
}

function spawnCollect(args, { env = {}, cwd = bench, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

// --- reading each tool's output into items { kind, reason?, site, locations } ---

function oursItems(reportFile) {
  let report;
  try {
    report = JSON.parse(readFileSync(reportFile, 'utf8'));
  } catch (error) {
    return { items: [], error: `no report: ${error.message}` };
  }
  return {
    items: report.leaks.map((g) => {
      const site = g.site ? locations(g.site)[0] : undefined;
      return {
        kind: g.kind,
        reason: g.reason,
        count: g.count,
        site,
        locations: locations([g.site ?? '', ...g.stack].join('\n')),
      };
    }),
  };
}

function whyItems(text) {
  const items = [];
  for (const block of text.split(/\n(?=# )/)) {
    const m = /^# (\S+)/.exec(block.trim());
    if (!m) continue;
    const locs = locations(block);
    items.push({ kind: m[1], locations: locs, site: firstFixtureFrame(locs) });
  }
  return { items };
}

function wtfnodeItems(text) {
  const items = [];
  let section;
  let current;
  for (const line of text.split('\n')) {
    const s = /^- ([^:]+):/.exec(line);
    if (s) {
      section = s[1].trim();
      current = undefined;
      continue;
    }
    if (!section) continue;
    if (/^ {2}- /.test(line)) {
      current = { kind: section, text: line };
      items.push(current);
    } else if (current && /^ {3,}/.test(line)) {
      current.text += `\n${line}`;
    } else if (line.trim() && !line.startsWith(' ')) {
      section = undefined;
    }
  }
  return {
    items: items
      .filter((i) => !i.text.includes('(stdio)'))
      .map((i) => {
        const locs = locations(i.text);
        return { kind: i.kind, locations: locs, site: firstFixtureFrame(locs) };
      }),
  };
}

/** vitest --detectAsyncLeaks prints, per test file, each leaked resource type and its stack. */
function vitestItems(text, testFile, base) {
  const items = [];
  // blocks look like "<TYPE> leaking in <file>", a code frame and "❯ fn path:line:col" lines,
  // up to a blank line; paths are relative to the vitest root
  const re = /(\w+) leaking in (\S+)\n([\s\S]*?)(?:\n\s*\n|$)/g;
  for (const m of text.matchAll(re)) {
    if (m[2].trim() !== testFile) continue;
    const locs = locations(
      m[3]
        .split('\n')
        .filter((l) => l.includes('❯'))
        .join('\n'),
      base,
    );
    items.push({ kind: m[1], locations: locs, site: firstFixtureFrame(locs) });
  }
  return { items };
}

const isHarness = (loc) => loc.file === harness || loc.file === leakTestHarness;
const inFixtures = (loc) => loc.file.startsWith(fixturesDir) && !isHarness(loc);

function firstFixtureFrame(locs) {
  return locs.find(inFixtures);
}

/** Drops what belongs to the harness: items whose only bench locations are harness frames. */
function withoutHarness(items) {
  return items.filter((i) => {
    const bench = i.locations.filter((l) => l.file.startsWith(fixturesDir));
    return bench.length === 0 || bench.some(inFixtures);
  });
}

// --- running ---

async function runTool(tool, fixture, mode, scratch) {
  const args = ['--expose-gc', harness, fixture, mode];
  if (tool === 'ours') {
    const file = join(scratch, `${fixture}-${mode}.json`);
    const r = await spawnCollect(['--import', '@trustflow/instrument', ...args], {
      env: {
        TRUSTFLOW_REPORT: 'exit',
        TRUSTFLOW_REPORT_FILE: file,
        // no endpoint needed for a report; nothing else changes
        OTEL_METRICS_EXPORTER: 'none',
      },
    });
    return { ...oursItems(file), raw: r };
  }
  if (tool === 'why') {
    const r = await spawnCollect([
      '--import',
      join(bench, 'configs', 'why-is-node-running.mjs'),
      ...args,
    ]);
    return { ...whyItems(r.err), raw: r };
  }
  if (tool === 'wtfnode') {
    const r = await spawnCollect(['--require', join(bench, 'configs', 'wtfnode.cjs'), ...args]);
    return { ...wtfnodeItems(r.out), raw: r };
  }
  if (tool === 'leak-test') {
    const r = await spawnCollect([leakTestHarness, fixture, mode]);
    let items = [];
    try {
      const { leaks } = JSON.parse(r.out.trim().split('\n').pop());
      items = leaks.map((g) => ({
        kind: g.kind,
        reason: g.reason,
        site: g.site ? locations(g.site)[0] : undefined,
        locations: locations([g.site ?? '', ...g.stack].join('\n')),
      }));
    } catch {}
    return { items, raw: r };
  }
  throw new Error(`unknown tool ${tool}`);
}

/** Writes one test file per fixture and mode into `dir` (for vitest or jest). */
function writeTestFiles(dir, runner) {
  mkdirSync(dir, { recursive: true });
  const files = [];
  for (const f of FIXTURES) {
    for (const mode of ['leak', 'clean']) {
      const name = `${f.name}.${mode}.test.mjs`;
      files.push({ fixture: f.name, mode, name });
      writeFileSync(
        join(dir, name),
        [
          "import { mkdtempSync } from 'node:fs';",
          "import { tmpdir } from 'node:os';",
          "import { join } from 'node:path';",
          runner === 'vitest' ? "import { test } from 'vitest';" : '',
          `import { main } from ${JSON.stringify(join(fixturesDir, `${f.name}.mjs`))};`,
          `test(${JSON.stringify(`${f.name} ${mode}`)}, async () => {`,
          `  globalThis.kept = await main({ leak: ${mode === 'leak'}, tmp: mkdtempSync(join(tmpdir(), 'tf-${runner}-')) });`,
          "  if (typeof gc === 'function') { gc(); await new Promise((r) => setTimeout(r, 20)); gc(); }",
          '});',
          '',
        ].join('\n'),
      );
    }
  }
  return files;
}

/** One vitest run over every fixture and mode (each a test file); returns items per file. */
async function runVitest(scratch) {
  const dir = join(scratch, 'vitest');
  const files = writeTestFiles(dir, 'vitest');
  writeFileSync(
    join(dir, 'vitest.config.mjs'),
    `export default { test: { root: ${JSON.stringify(dir)}, include: ['*.test.mjs'], pool: 'forks', execArgv: ['--expose-gc'], testTimeout: 30000, teardownTimeout: 2000 } };\n`,
  );
  const vitestBin = join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const r = await spawnCollect(
    [
      vitestBin,
      'run',
      '--config',
      join(dir, 'vitest.config.mjs'),
      '--detectAsyncLeaks',
      '--no-color',
      '--maxWorkers=1',
    ],
    { cwd: bench, timeoutMs: 180_000, env: { NO_COLOR: '1', FORCE_COLOR: '0' } },
  );
  const text = `${r.out}\n${r.err}`;
  const results = new Map();
  for (const f of files) {
    results.set(`${f.fixture}.${f.mode}`, { ...vitestItems(text, f.name, dir), raw: r });
  }
  return { results, raw: r };
}

/**
 * jest --detectOpenHandles prints, after the run, "●  TYPE" blocks with a code frame and
 * "at fn (path:line:col)" frames, the last of them in the test file that created the handle.
 */
function jestItems(text, testFile, base) {
  const items = [];
  const start = text.indexOf('Jest has detected');
  if (start < 0) return { items };
  for (const block of text
    .slice(start)
    .split(/\n\s*●\s+/)
    .slice(1)) {
    const kind = /^(\S+)/.exec(block)?.[1];
    const frames = block.split('\n').filter((l) => /^\s+at /.test(l));
    if (!frames.some((l) => l.includes(`(${testFile}:`) || l.includes(`/${testFile}:`))) continue;
    const locs = locations(frames.join('\n'), base);
    items.push({ kind, locations: locs, site: firstFixtureFrame(locs) });
  }
  return { items };
}

/** One jest run (native ESM: --experimental-vm-modules) over every fixture and mode. */
async function runJest(scratch) {
  const dir = join(scratch, 'jest');
  const files = writeTestFiles(dir, 'jest');
  writeFileSync(
    join(dir, 'jest.config.mjs'),
    `export default { rootDir: ${JSON.stringify(dir)}, testMatch: ['**/*.test.mjs'], transform: {}, testEnvironment: 'node', testTimeout: 30000 };\n`,
  );
  const jestBin = join(bench, 'node_modules', 'jest', 'bin', 'jest.js');
  const r = await spawnCollect(
    [
      '--experimental-vm-modules',
      '--expose-gc',
      '--no-warnings',
      jestBin,
      '--config',
      join(dir, 'jest.config.mjs'),
      '--detectOpenHandles',
      '--forceExit',
      '--runInBand',
      '--ci',
    ],
    { cwd: dir, timeoutMs: 180_000, env: { NO_COLOR: '1', FORCE_COLOR: '0' } },
  );
  const text = `${r.out}\n${r.err}`;
  const results = new Map();
  for (const f of files) {
    results.set(`${f.fixture}.${f.mode}`, { ...jestItems(text, f.name, dir), raw: r });
  }
  return { results, raw: r };
}

function judge(fixture, tool, leakRun, cleanRun) {
  const reg = region(fixture.name);
  const inRegion = (loc) =>
    loc && loc.file === reg.file && loc.line >= reg.first && loc.line <= reg.last;
  const kinds = kindsOf(fixture, tool);
  const leakItems = withoutHarness(leakRun.items);
  const cleanItems = withoutHarness(cleanRun.items);
  // what the leak run reports that the clean run does not (same kind at the same site)
  const signature = (i) =>
    `${i.kind}|${i.reason ?? ''}|${i.site ? `${i.site.file}:${i.site.line}` : ''}`;
  const cleanSignatures = new Set(cleanItems.map(signature));
  const leakOnly = leakItems.filter((i) => !cleanSignatures.has(signature(i)));
  const ofKind = (items) => items.filter((i) => kinds.includes(i.kind)).length;
  const named = leakOnly.some((i) => inRegion(i.site));
  const detected = named || ofKind(leakItems) > ofKind(cleanItems);
  const falsePositives = cleanItems.filter(
    (i) =>
      inRegion(i.site) ||
      i.locations.some(inRegion) ||
      ((tool === 'ours' || tool === 'leak-test') &&
        (i.reason === 'gc-unreleased' || i.reason === 'stale')) ||
      kinds.includes(i.kind),
  );
  return {
    fixture: fixture.name,
    tool,
    detected,
    line: named,
    falsePositives: falsePositives.length,
    // what else the clean twin listed (open by design at the check, like the libp2p connection)
    otherOnClean: cleanItems.length - falsePositives.length,
    leakKinds: [...new Set(leakOnly.map((i) => i.kind))],
    site: leakOnly.find((i) => inRegion(i.site))?.site ?? null,
    error: leakRun.error ?? cleanRun.error,
  };
}

export async function run({ quick }) {
  const scratch = mkdtempSync(join(tmpdir(), 'tf-detection-'));
  const matrix = [];
  try {
    // nothing here is timed, so three fixtures run at once (the test runners go beside them)
    const jobs = [];
    for (const tool of ['ours', 'leak-test', 'why', 'wtfnode']) {
      for (const fixture of FIXTURES) jobs.push({ tool, fixture });
    }
    // the test runners go beside the fixtures, one after the other
    const runners = (async () => {
      if (process.env.BENCH_VITEST === '0') return {};
      const vitest = await runVitest(scratch);
      const jest = await runJest(scratch);
      return { vitest, jest };
    })();
    const results = new Map();
    let next = 0;
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        while (next < jobs.length) {
          const { tool, fixture } = jobs[next++];
          const leakRun = await runTool(tool, fixture.name, 'leak', scratch);
          const cleanRun = await runTool(tool, fixture.name, 'clean', scratch);
          for (const r of [leakRun, cleanRun]) {
            if (r.raw.code !== 0) {
              const lines = r.raw.err.trim().split('\n');
              const message = lines.find((l) => /Error\b/.test(l)) ?? lines.at(-1);
              r.error = `exit ${r.raw.code ?? r.raw.signal}: ${message}`;
            }
          }
          results.set(`${tool}/${fixture.name}`, judge(fixture, tool, leakRun, cleanRun));
        }
      }),
    );
    for (const { tool, fixture } of jobs) matrix.push(results.get(`${tool}/${fixture.name}`));
    for (const [tool, v] of Object.entries(await runners)) {
      for (const fixture of FIXTURES) {
        const leakRun = v.results.get(`${fixture.name}.leak`);
        const cleanRun = v.results.get(`${fixture.name}.clean`);
        matrix.push(judge(fixture, tool, leakRun, cleanRun));
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  // the matrix is the same in quick and full runs (a fixture is one short process)
  void quick;
  return { rows: [], markdown: markdown(matrix), json: { detection: matrix } };
}

function cell(m) {
  if (!m) return 'n/a';
  if (m.error) return `error (${m.error.slice(0, 60)})`;
  const found = m.detected ? (m.line ? 'yes, line' : 'yes, no line') : 'no';
  return m.falsePositives ? `${found}; **${m.falsePositives} FP**` : found;
}

function markdown(matrix) {
  const out = [];
  out.push(
    'Each cell: does the tool report the leak, does it name a line inside the leak region, and any false positive (FP: something reported on the clean twin that the clean twin closed).',
    '',
  );
  const tools = TOOLS.filter((t) => matrix.some((m) => m.tool === t.id));
  out.push(`| fixture | ${tools.map((t) => t.label).join(' | ')} |`);
  out.push(`|---|${tools.map(() => '---').join('|')}|`);
  for (const f of FIXTURES) {
    const title = readFileSync(join(fixturesDir, `${f.name}.mjs`), 'utf8').match(
      /export const title = '([^']+)'/,
    )?.[1];
    out.push(
      `| ${title ?? f.name} | ${tools.map((t) => cell(matrix.find((m) => m.fixture === f.name && m.tool === t.id))).join(' | ')} |`,
    );
  }
  const ours = matrix.filter((m) => m.tool === 'ours');
  const sites = ours
    .filter((m) => m.site)
    .map((m) => `${m.fixture} → \`${m.site.file.slice(root.length)}:${m.site.line}\``);
  out.push('', `Sites named by ours: ${sites.join(', ') || 'none'}.`);
  const other = ours.filter((m) => m.otherOnClean);
  if (other.length) {
    out.push(
      '',
      `Also listed by ours on a clean twin, open by design at the check (not leaks of the fixture): ${other.map((m) => `${m.fixture} (${m.otherOnClean})`).join(', ')}.`,
    );
  }
  return out.join('\n');
}
