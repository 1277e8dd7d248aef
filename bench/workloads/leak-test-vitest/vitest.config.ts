import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// 200 small tests (bench/workloads/leak-test-vitest.mjs), checked by the leak-test entry when
// LT_CHECK=on. The bench package does not depend on leak-test: the entry is loaded by path.
const entry = fileURLToPath(new URL('../../../packages/leak-test/dist/vitest.js', import.meta.url));

export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ['*.bench-fixture.ts'],
    setupFiles: process.env.LT_CHECK === 'on' ? [entry] : [],
    pool: 'forks',
  },
});
