/**
 * The layering of ../shared/DESIGN.md ("Imports go one way"), checked on the source:
 *   ir ← compiler ← backends (compiler types only) ← runtime ← models ← cli
 * Each top-level folder imports values only from the layers below it (types may come from a layer
 * further up only where noted), with two narrower rules the code follows:
 *  - backends take types from compiler/, and one value module: compiler/debug.ts (KILN_DEBUG);
 *  - models use the compiler through compiler/dsl and compiler/transforms only (compiling is the
 *    runtime's job: runtime/compile.ts).
 * Also: configuration is read at the edge, so process.env is read only in runtime/ and cli/ (and in
 * compiler/debug.ts, the one debug switch); and no module imports itself through a cycle.
 * Every kind of import counts: `import … from`, `export … from`, `import '…'` and `import('…')`.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const LAYERS = ['ir', 'compiler', 'backends', 'runtime', 'models', 'cli'] as const;
type Layer = (typeof LAYERS)[number];

/** What a layer may import: values from `values`, types also from `types`. */
const ALLOWED: Record<Layer, { values: Layer[]; types: Layer[] }> = {
  ir: { values: ['ir'], types: ['ir'] },
  compiler: { values: ['ir', 'compiler'], types: ['ir', 'compiler'] },
  backends: { values: ['ir', 'backends'], types: ['ir', 'compiler', 'backends'] },
  runtime: { values: ['ir', 'compiler', 'backends', 'runtime'], types: ['ir', 'compiler', 'backends', 'runtime'] },
  models: { values: ['ir', 'compiler', 'runtime', 'models'], types: ['ir', 'compiler', 'backends', 'runtime', 'models'] },
  cli: { values: [...LAYERS], types: [...LAYERS] },
};
/** Value imports allowed across the rule above: backends report generated sources to KILN_DEBUG. */
const VALUE_EXCEPTIONS: Partial<Record<Layer, readonly string[]>> = { backends: ['compiler/debug.ts'] };
/** Of compiler/, models import only these folders (values and types). */
const MODELS_COMPILER = ['compiler/dsl/', 'compiler/transforms/'];
/** The only files below runtime/ that read process.env. */
const ENV_READERS = ['compiler/debug.ts'];

interface Import {
  /** The importing file and the imported one, relative to the repository root. */
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
  /** The import as written (for messages). */
  readonly text: string;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Comments blanked (strings kept), so commented-out imports and `//` in strings do not confuse the scan. */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\/|(^|[^:'"`\\])\/\/[^\n]*/g, (m, pre: string | undefined) => (m.startsWith('/*') ? m.replace(/[^\n]/g, ' ') : `${pre ?? ''}`));
}

const STATIC_RE = /^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*'([^']+)'/gm;
const BARE_RE = /^\s*import\s*'([^']+)'/gm;
const DYNAMIC_RE = /\bimport\(\s*'([^']+)'\s*\)/g;

/** A named-import list whose every specifier is `type X` (`import { type A, type B } from`). */
function allSpecifiersTypes(clause: string): boolean {
  const m = /^\{([^}]*)\}$/.exec(clause.trim());
  if (!m) return false;
  const specs = m[1]!.split(',').map((s) => s.trim()).filter(Boolean);
  return specs.length > 0 && specs.every((s) => s.startsWith('type '));
}

/** Every relative import of `src` (the text of file `file`, relative to ROOT). */
function importsOf(file: string, src: string): Import[] {
  const code = stripComments(src);
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean, text: string) => {
    if (spec.startsWith('.')) out.push({ from: file, to: relative(ROOT, resolve(ROOT, dirname(file), spec)), typeOnly, text: text.replace(/\s+/g, ' ').trim() });
  };
  for (const m of code.matchAll(STATIC_RE)) add(m[4]!, Boolean(m[2]) || allSpecifiersTypes(m[3]!), m[0]);
  for (const m of code.matchAll(BARE_RE)) add(m[1]!, false, m[0]);
  for (const m of code.matchAll(DYNAMIC_RE)) add(m[1]!, false, m[0]);
  return out;
}

const layerOf = (path: string): Layer | undefined => {
  const top = path.split('/')[0] as Layer;
  return LAYERS.includes(top) ? top : undefined;
};

/** The layering violations of one import (empty when it is allowed). */
function violations(imp: Import): string[] {
  const [from, to] = [layerOf(imp.from), layerOf(imp.to)];
  if (!from || !to) return [];
  const bad: string[] = [];
  const rule = ALLOWED[from];
  const ok = (imp.typeOnly ? rule.types : rule.values).includes(to) || (!imp.typeOnly && rule.types.includes(to) && (VALUE_EXCEPTIONS[from] ?? []).includes(imp.to));
  if (!ok) bad.push(`${imp.from} imports ${imp.typeOnly ? 'types of ' : ''}${imp.to}: ${from}/ may import ${imp.typeOnly ? 'types' : 'values'} only from ${(imp.typeOnly ? rule.types : rule.values).join(', ')}/ (${imp.text})`);
  if (from === 'models' && to === 'compiler' && !MODELS_COMPILER.some((d) => imp.to.startsWith(d)))
    bad.push(`${imp.from} imports ${imp.to}: models/ use only ${MODELS_COMPILER.join(' and ')} of the compiler (${imp.text})`);
  return bad;
}

const sources = LAYERS.flatMap((l) => files(join(ROOT, l))).map((f) => relative(ROOT, f));
const text = new Map(sources.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
const imports = sources.flatMap((f) => importsOf(f, text.get(f)!));

describe('layering (../shared/DESIGN.md)', () => {
  for (const layer of LAYERS) {
    it(`${layer}/ imports only ${ALLOWED[layer].values.join(', ')} (and types of ${ALLOWED[layer].types.join(', ')})`, () => {
      expect(imports.filter((i) => layerOf(i.from) === layer).flatMap(violations)).toEqual([]);
    });
  }

  it('the scanner sees every kind of import and judges each against the rules', () => {
    const found = importsOf('compiler/x.ts', [
      "import { a } from '../runtime/a.ts';",
      "import type { B } from '../runtime/b.ts';",
      "import { type C, type D } from '../runtime/c.ts';",
      "import { type E, f } from '../runtime/e.ts';",
      "export * from '../runtime/g.ts';",
      "import '../runtime/h.ts';",
      "const m = await import('../runtime/i.ts');",
      "import {\n  j,\n  k,\n} from '../runtime/j.ts';",
      "// import { z } from '../runtime/commented.ts';",
      "/* import { z } from '../runtime/block.ts'; */",
    ].join('\n'));
    expect(found.map((i) => [i.to, i.typeOnly])).toEqual([
      ['runtime/a.ts', false], ['runtime/b.ts', true], ['runtime/c.ts', true], ['runtime/e.ts', false], ['runtime/g.ts', false], ['runtime/j.ts', false],
      ['runtime/h.ts', false], ['runtime/i.ts', false],
    ]);
    expect(found.every((i) => violations(i).length === 1)).toBe(true);
    const imp = (from: string, to: string, typeOnly = false): Import => ({ from, to, typeOnly, text: '' });
    expect(violations(imp('backends/cuda/codegen.ts', 'compiler/debug.ts'))).toEqual([]);
    expect(violations(imp('backends/cuda/codegen.ts', 'compiler/compile.ts'))).toHaveLength(1);
    expect(violations(imp('backends/cuda/codegen.ts', 'compiler/compile.ts', true))).toEqual([]);
    expect(violations(imp('models/x.ts', 'compiler/transforms/grad.ts'))).toEqual([]);
    expect(violations(imp('models/x.ts', 'compiler/fuse/fuse.ts'))).toHaveLength(1);
    expect(violations(imp('models/x.ts', 'backends/backend.ts'))).toHaveLength(1);
    expect(violations(imp('models/x.ts', 'backends/backend.ts', true))).toEqual([]);
    expect(violations(imp('runtime/x.ts', 'models/mlp.ts', true))).toHaveLength(1);
    expect(violations(imp('ir/x.ts', 'compiler/debug.ts'))).toHaveLength(1);
  });

  it('configuration is read at the edge: process.env only in runtime/, cli/ and compiler/debug.ts', () => {
    const readers = sources.filter((f) => !['runtime', 'cli'].includes(layerOf(f)!) && /\bprocess\.env\b/.test(stripComments(text.get(f)!)));
    expect(readers).toEqual(ENV_READERS);
  });

  it('no import cycles between modules (value imports)', () => {
    const deps = new Map<string, string[]>();
    for (const i of imports) if (!i.typeOnly) deps.set(i.from, [...(deps.get(i.from) ?? []), i.to]);
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...path.slice(path.indexOf(f)), f].join(' → '));
        return;
      }
      state.set(f, 'open');
      for (const d of deps.get(f) ?? []) visit(d, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of sources) visit(f, []);
    expect(cycles).toEqual([]);
  });
});
