/**
 * @file Vite configuration of the sampling page (web/page) and the browser runtime (web/runtime), used by
 * `kiln export --target web` (cli/web/buildPage.ts) and by hand: `npx vite --config web/vite.config.ts`
 * serves the page for development (with a bundle's files copied next to it). Relative base: a bundle
 * folder works from any URL path.
 */
import { defineConfig } from 'vite';

export default defineConfig({
  root: new URL('./page/', import.meta.url).pathname,
  base: './',
  logLevel: 'warn',
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
});
