/**
 * The CLI starts without its optional heavy packages: the static import graph of cli/main.ts reaches no
 * development dependency (vite, playwright-core) and not ts-morph (used only by `kiln export`, loaded
 * there on demand). The GPU machine's lean pack (../shared/device/pack) carries none of them, and every
 * command must run there; a user installing without dev dependencies gets a working `kiln` too. Nor does
 * it reach golden/nnCases.ts, which lists golden/data/nn when imported: a copy without the stored goldens
 * (the GPU machine's, cut to its size limit) must still run `kiln train` (only `kiln golden check` loads them).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '../..');
/** Static imports and re-exports only (`import('x')` is on demand, so it is not followed). */
const STATIC_IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\s+from\s+)?'([^']+)'/g;
const NOT_AT_STARTUP = ['ts-morph', 'vite', 'playwright-core'];

function packagesReached(entry: string, files = new Set<string>()): Map<string, string> {
  const seen = files, reached = new Map<string, string>();
  const todo = [join(REPO, entry)];
  while (todo.length) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec);
        if (existsSync(target)) todo.push(target);
      } else if (!spec.startsWith('node:')) {
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!reached.has(pkg)) reached.set(pkg, file.slice(REPO.length + 1));
      }
    }
  }
  return reached;
}

describe('CLI start-up imports', () => {
  it('cli/main.ts reaches no dev dependency and not ts-morph by static imports', () => {
    const reached = packagesReached('cli/main.ts');
    expect(reached.has('commander')).toBe(true); // the walk sees packages at all
    expect(NOT_AT_STARTUP.filter((p) => reached.has(p)).map((p) => `${p} (imported by ${reached.get(p)})`)).toEqual([]);
  });

  it('cli/main.ts does not load the stored goldens (golden/nnCases.ts) by static imports', () => {
    const files = new Set<string>();
    packagesReached('cli/main.ts', files);
    expect(files.has(join(REPO, 'cli/commands/train.ts'))).toBe(true); // the walk follows our files
    expect([...files].filter((f) => f.startsWith(join(REPO, 'golden/')) && f !== join(REPO, 'golden/scripts.ts')).map((f) => f.slice(REPO.length + 1))).toEqual([]);
  });
});
