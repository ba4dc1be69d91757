/**
 * The layering of DESIGN.md, checked on the source: each top-level folder imports only the layers
 * below it, so there are no cycles between layers.
 *   ir → (nothing of ours); compiler → ir; backends → ir (+ compiler types only); runtime → ir,
 *   compiler, backends; models → ir, compiler, backends (types), runtime; cli → everything.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const LAYERS = ['ir', 'compiler', 'backends', 'runtime', 'models', 'cli'] as const;
type Layer = (typeof LAYERS)[number];
const ALLOWED: Record<Layer, { values: Layer[]; types: Layer[] }> = {
  ir: { values: ['ir'], types: ['ir'] },
  compiler: { values: ['ir', 'compiler'], types: ['ir', 'compiler'] },
  backends: { values: ['ir', 'backends'], types: ['ir', 'backends', 'compiler'] },
  runtime: { values: ['ir', 'compiler', 'backends', 'runtime'], types: ['ir', 'compiler', 'backends', 'runtime'] },
  models: { values: ['ir', 'compiler', 'runtime', 'models'], types: ['ir', 'compiler', 'backends', 'runtime', 'models'] },
  cli: { values: [...LAYERS], types: [...LAYERS] },
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const IMPORT_RE = /^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm;

describe('layering', () => {
  for (const layer of LAYERS) {
    it(`${layer}/ imports only ${ALLOWED[layer].values.join(', ')} (and types of ${ALLOWED[layer].types.join(', ')})`, () => {
      const bad: string[] = [];
      for (const f of files(join(ROOT, layer))) {
        const src = readFileSync(f, 'utf8');
        for (const m of src.matchAll(IMPORT_RE)) {
          const spec = m[3]!;
          if (!spec.startsWith('.')) continue;
          const target = relative(ROOT, resolve(dirname(f), spec)).split('/')[0] as Layer;
          if (!LAYERS.includes(target)) continue;
          const typeOnly = Boolean(m[2]) || /^\s*import\s+\{\s*type\s[^}]*\}/.test(m[0]) && !/,\s*[A-Za-z_]/.test(m[0].replace(/type\s+\w+/g, ''));
          const ok = (typeOnly ? ALLOWED[layer].types : ALLOWED[layer].values).includes(target);
          if (!ok) bad.push(`${relative(ROOT, f)} imports ${typeOnly ? 'types of ' : ''}${target}/ (${spec})`);
        }
      }
      expect(bad).toEqual([]);
    });
  }
});
