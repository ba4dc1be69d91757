/**
 * @file The two vite builds of a web bundle: the page (web/page, with web/vite.config.ts) into the bundle
 * folder, and the browser runtime (web/runtime/index.ts) as one ES module, runtime/kiln-web.js, for
 * pages of your own (api.ts's openBundle loads it).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../../ir/errors.ts';

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');

export async function buildPage(out: string): Promise<void> {
  let vite: typeof import('vite');
  try {
    vite = await import('vite');
  } catch (e) {
    throw new KilnError(`the web export builds its page with vite, which is not installed (npm ci installs it as a dev dependency): ${(e as Error).message}`);
  }
  const outDir = resolve(out);
  await vite.build({ configFile: join(WEB, 'vite.config.ts'), build: { outDir, emptyOutDir: true }, logLevel: 'warn' });
  await vite.build({
    configFile: false, root: WEB, logLevel: 'warn',
    build: { outDir: join(outDir, 'runtime'), emptyOutDir: true, target: 'es2022', lib: { entry: join(WEB, 'runtime', 'index.ts'), formats: ['es'], fileName: () => 'kiln-web.js' } },
  });
}
