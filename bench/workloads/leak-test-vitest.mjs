// Wall time of a vitest run of 200 small tests, with or without the @trustflow/leak-test/vitest
// setup file: env LT_CHECK = on | off. Prints ms per test (run time / 200).
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { report, root } from '../lib.mjs';

const require = createRequire(join(root, 'packages', 'leak-test', 'package.json'));
const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
const config = join(root, 'bench', 'workloads', 'leak-test-vitest', 'vitest.config.ts');
const start = performance.now();
await new Promise((resolve, reject) =>
  execFile(
    process.execPath,
    [vitest, 'run', '--config', config],
    { env: { ...process.env, NO_COLOR: '1' } },
    (error, stdout, stderr) =>
      error ? reject(new Error(`${stdout}\n${stderr}`)) : resolve(stdout),
  ),
);
report({ value: (performance.now() - start) / 200 });
