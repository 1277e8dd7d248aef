import { defineConfig } from 'vitest/config';

// One vitest project per package. Every project runs in forked processes with --expose-gc so that
// GC-dependent tests can force collection and await finalizers.
const packages = [
  'core',
  'plugin-fs',
  'plugin-net',
  'plugin-libp2p',
  'plugin-buffer-pool',
  'instrument',
  'leak-test',
  'trustflow-node',
];

export default defineConfig({
  test: {
    projects: packages.map((name) => ({
      test: {
        name,
        root: `packages/${name}`,
        include: ['test/**/*.test.ts'],
        pool: 'forks',
        execArgv: ['--expose-gc'],
        testTimeout: 30_000,
        hookTimeout: 30_000,
      },
    })),
  },
});
