/**
 * @file `kiln serve <bundle>`: serve a web bundle (kiln export --target web) on localhost, where the page
 * samples the model on the browser's WebGPU. Runs until interrupted.
 */
import type { Command } from 'commander';
import type { AddressInfo } from 'node:net';
import { serveBundle } from '../web/serveBundle.ts';
import { int } from '../options.ts';

export function register(program: Command): void {
  program.command('serve')
    .description('serve a web bundle (kiln export --target web) locally: open the printed URL in a browser with WebGPU')
    .argument('<bundle>', 'the bundle folder (--out of kiln export)')
    .option('--port <n>', 'TCP port (0: any free port)', int, 8080)
    .option('--host <addr>', 'address to listen on (localhost is a secure context, which WebGPU needs)', '127.0.0.1')
    .action(async (dir: string, o: { port: number; host: string }) => {
      const server = await serveBundle(dir, o.port, o.host);
      const a = server.address() as AddressInfo;
      console.log(`serving ${dir} at http://${o.host === '0.0.0.0' ? 'localhost' : o.host}:${a.port}/ (Ctrl-C stops)`);
      await new Promise<void>((done) => {
        const stop = () => server.close(() => done());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
