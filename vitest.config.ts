import { defineConfig } from 'vitest/config';

// test/gpu needs a GPU machine (see test/gpu/README.md): it runs only when KILN_BACKEND names a GPU backend.
const gpu = Boolean(process.env.KILN_BACKEND && process.env.KILN_BACKEND !== 'cpu');

// The WGSL backend's tests run on SwiftShader's Vulkan driver (Debian package chromium) unless a driver is named.
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
const vulkan = process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES ? {} : { VK_ICD_FILENAMES: SWIFTSHADER };

export default defineConfig({
  test: {
    include: gpu ? ['test/gpu/**/*.test.ts'] : ['test/**/*.test.ts'],
    exclude: gpu ? [] : ['test/gpu/**', 'node_modules/**'],
    testTimeout: gpu ? 600_000 : 60_000,
    pool: 'forks',
    // Tests compile afresh (the compiled-program cache has tests of its own, with their own folders).
    env: { ...vulkan, KILN_PROGRAM_CACHE: 'off' },
  },
});
