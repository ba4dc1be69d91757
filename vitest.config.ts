import { defineConfig } from 'vitest/config';

// test/gpu needs a GPU machine (see test/gpu/README.md): it runs only when KILN_BACKEND names a GPU backend.
const gpu = Boolean(process.env.KILN_BACKEND && process.env.KILN_BACKEND !== 'cpu');

export default defineConfig({
  test: {
    include: gpu ? ['test/gpu/**/*.test.ts'] : ['test/**/*.test.ts'],
    exclude: gpu ? [] : ['test/gpu/**', 'node_modules/**'],
    testTimeout: gpu ? 600_000 : 60_000,
    pool: 'forks',
  },
});
