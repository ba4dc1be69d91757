/**
 * @file A static file server for a web bundle (`kiln serve`): files under the bundle folder only (no
 * path escapes), the MIME types a browser needs for module scripts, `/` → index.html, no caching (a
 * re-export shows at once). localhost is a secure context, so navigator.gpu is available there.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { KilnError } from '../../ir/errors.ts';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8', '.ts': 'text/plain; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml', '.safetensors': 'application/octet-stream',
};

/** Check that `dir` is a bundle with a page (bundle.json and index.html). */
export function checkBundleDir(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new KilnError(`${dir}: no such bundle folder (make one with kiln export <checkpoint> --target web --out ${dir})`);
  for (const f of ['bundle.json', 'index.html']) if (!existsSync(join(dir, f))) throw new KilnError(`${dir}: not a Kiln web bundle (no ${f}); make one with kiln export <checkpoint> --target web --out ${dir}`);
}

/** Serve `dir` on host:port (port 0: any free port); resolves when listening. */
export function serveBundle(dir: string, port: number, host = '127.0.0.1'): Promise<Server> {
  checkBundleDir(dir);
  const root = resolve(dir);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if ((file !== root && !file.startsWith(root + sep)) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(readFileSync(file));
  });
  return new Promise((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'EADDRINUSE' ? new KilnError(`--port ${port}: the port is in use; pick another (--port 0 picks a free one)`) : e));
    server.listen(port, host, () => ok(server));
  });
}
