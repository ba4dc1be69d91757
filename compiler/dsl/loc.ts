/**
 * @file Model source locations: the file:line:column of the model code that called a DSL op,
 * found by walking the JS stack past Kiln's own DSL and IR frames. Attached to every traced
 * node so that shape errors (and KILN_DEBUG output) point at the model line.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const kilnRoot = path.resolve(here, '..', '..');
const skipDirs = [path.join(kilnRoot, 'compiler', 'dsl') + path.sep, path.join(kilnRoot, 'ir') + path.sep];

const FRAME_RE = /\(?((?:file:\/\/)?\/[^():]+|[A-Za-z]:\\[^():]+):(\d+):(\d+)\)?\s*$/;

/** The first stack frame outside compiler/dsl and ir, as "relative/path.ts:line:col" (or undefined). */
export function callerLocation(): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 30;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  for (const line of stack.split('\n').slice(1)) {
    const m = FRAME_RE.exec(line.trim());
    if (!m) continue;
    let file = m[1]!;
    if (file.startsWith('file://')) file = fileURLToPath(file);
    if (file.includes(`${path.sep}node_modules${path.sep}`) || file.startsWith('node:')) continue;
    if (skipDirs.some((d) => file.startsWith(d))) continue;
    const rel = path.relative(process.cwd(), file);
    return `${rel.startsWith('..') ? file : rel}:${m[2]}:${m[3]}`;
  }
  return undefined;
}
