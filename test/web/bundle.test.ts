/**
 * The web bundle's pieces without a browser:
 *  - the browser runtime and the page import no Node module and no package, and read no `process` (a
 *    walk of their import graph from web/runtime/index.ts and web/page/main.ts; the same walk flags the
 *    Node WGSL backend, so it can see such imports);
 *  - the generated api.ts (ts-morph) type-checks, names each input's dtype and shape, and rejects a
 *    tensor of the wrong shape or dtype and a class label the model does not have;
 *  - `kiln export` / `kiln serve` as a user runs them: --help lists every option with its default, and
 *    mistakes are one line with exit 2 (a non-empty folder that is no bundle, a bad --steps, serving a
 *    folder that is no bundle).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { Project } from 'ts-morph';
import { beforeAll, describe, expect, it } from 'vitest';
import { WEBGPU_DEFAULT_LIMITS, type WgslPlan } from '../../backends/wgsl/plan.ts';
import { planLimitShortfall } from '../../backends/wgsl/planExecutable.ts';
import { exportWebBundle } from '../../cli/web/exportBundle.ts';
import { REPO, STACK_LINE, kiln } from '../support/kilnCli.ts';
import { writeTinyGenerator } from './tinyBundle.ts';

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g;

/** Files reachable from `entry` by value or type imports, and the problems: Node or package imports, `process` reads. */
function importGraph(entry: string): { files: string[]; problems: string[] } {
  const seen = new Set<string>();
  const problems: string[] = [];
  const todo = [resolve(REPO, entry)];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const src = readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
    const rel = relative(REPO, f);
    if (/\bprocess\.|\brequire\(|\bBuffer\./.test(src)) problems.push(`${rel} uses process / require / Buffer`);
    for (const m of src.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2]!;
      if (spec.startsWith('.')) todo.push(resolve(dirname(f), spec));
      else problems.push(`${rel} imports '${spec}'`);
    }
  }
  return { files: [...seen].map((f) => relative(REPO, f)).sort(), problems };
}

describe('the browser runtime has no Node imports', () => {
  for (const entry of ['web/runtime/index.ts', 'web/page/main.ts']) {
    it(`${entry}: no node: or package imports, no process reads, anywhere in its import graph`, () => {
      const g = importGraph(entry);
      expect(g.files).toContain('backends/wgsl/planExecutable.ts');
      expect(g.files).toContain('models/sampling/eulerOde.ts');
      expect(g.files.some((f) => f.startsWith('compiler/'))).toBe(false); // the compiler stays in Node
      expect(g.problems).toEqual([]);
    });
  }
  it('the same walk flags the Node WGSL backend (it loads the webgpu package and reads KILN_DEBUG)', () => {
    const p = importGraph('backends/wgsl/executable.ts').problems.join('\n');
    expect(p).toMatch(/device\.ts imports 'webgpu'/);
    expect(p).toMatch(/compiler\/debug\.ts uses process/);
  });
});

describe('the generated api.ts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-web-api-'));
  let api: string;
  beforeAll(async () => {
    const t = writeTinyGenerator(dir);
    await exportWebBundle({ checkpoint: t.dit, out: join(dir, 'b'), model: t.spec, weights: 'ema', fae: t.fae, latentStats: t.stats, batch: 2, steps: 4, shift: 0.4, cfg: 1.5, seed: 0, range: [-1, 1], noPage: true, log: () => undefined, warn: () => undefined });
    api = readFileSync(join(dir, 'b', 'api.ts'), 'utf8');
  }, 60_000);

  /** Type errors of each module (each importing ./api.ts), as tsc reports them; one program for all (lib.dom is not loaded: a shim declares GPU and URL). */
  function typeErrors(uses: readonly string[]): string[][] {
    const project = new Project({ useInMemoryFileSystem: true, compilerOptions: { strict: true, target: 9, module: 199, moduleResolution: 99, lib: ['lib.es2023.d.ts'], types: [], noEmit: true, allowImportingTsExtensions: true } });
    project.createSourceFile('/b/api.ts', api);
    project.createSourceFile('/b/shim.d.ts', 'interface GPU { requestAdapter(): Promise<unknown> }\ndeclare class URL { constructor(url: string, base?: string | URL); readonly href: string }');
    const files = uses.map((u, i) => project.createSourceFile(`/b/use${i}.ts`, u));
    const all = project.getPreEmitDiagnostics();
    const text = (d: (typeof all)[number]) => { const m = d.getMessageText(); return typeof m === 'string' ? m : m.getMessageText(); };
    expect(all.filter((d) => !files.includes(d.getSourceFile()!)).map(text)).toEqual([]); // api.ts itself is clean
    return files.map((f) => all.filter((d) => d.getSourceFile() === f).map(text));
  }

  it('plans need only WebGPU\'s default limits; a smaller device is named by the limit it lacks', () => {
    const plan = JSON.parse(readFileSync(join(dir, 'b', 'programs', 'flow_euler_cfg.gpu.json'), 'utf8')) as WgslPlan;
    expect(plan.limits).toEqual(WEBGPU_DEFAULT_LIMITS);
    expect(Math.max(...plan.dispatches.map((d) => d.bindings.length))).toBeLessThanOrEqual(8);
    expect(planLimitShortfall(plan, { ...WEBGPU_DEFAULT_LIMITS })).toBeUndefined();
    expect(planLimitShortfall(plan, { ...WEBGPU_DEFAULT_LIMITS, maxStorageBuffersPerShaderStage: 4 })).toBe('maxStorageBuffersPerShaderStage: the program needs 8, the device offers 4');
  });

  it('names each input and output with its dtype and shape', () => {
    expect(api).toMatch(/Generated by `kiln export --target web`/);
    expect(api).toMatch(/export interface FlowEulerCfgInputs \{[^}]*readonly x: Tensor<'f32', readonly \[2, 4, 4, 4\]>;[^}]*readonly y: Tensor<'i32', readonly \[2\]>;[^}]*readonly cfg_scale: Tensor<'f32', readonly \[\]>;/s);
    expect(api).toMatch(/export interface FaeDecodeOutputs \{[^}]*readonly images: Tensor<'f32', readonly \[2, 3, 16, 16\]>;/s);
    expect(api).toMatch(/export type ClassLabel = 0 \| 1 \| 2;/);
    expect(api).toMatch(/readonly "blocks\.0\.attn\.qkv\.weight": Tensor<'f32', readonly \[96, 32\]>;/);
  });

  it('type-checks, and rejects a wrong shape, a wrong dtype and an unknown class', () => {
    const ok = `import { type FlowEulerInputs, type SampleRequest, PROGRAMS, CLASS_NAMES, BATCH } from './api.ts';
      const x: FlowEulerInputs['x'] = { dtype: 'f32', shape: [2, 4, 4, 4], data: new Float32Array(128) };
      const y: FlowEulerInputs['y'] = { dtype: 'i32', shape: [2], data: new Int32Array(2) };
      const r: SampleRequest = { labels: 2, steps: 10, cfg: 1.5, seed: 0 };
      const n: 2 = BATCH; const s: readonly [2, 4, 4, 4] = PROGRAMS.flow_euler.inputs.x.shape; const c: '0' = CLASS_NAMES[0];
      export { x, y, r, n, s, c };`;
    const bad = (line: string) => `import type { FlowEulerInputs, SampleRequest } from './api.ts';\n${line}\nexport {};`;
    const [good, shape, dtype, label] = typeErrors([ok,
      bad(`const x: FlowEulerInputs['x'] = { dtype: 'f32', shape: [2, 4, 4, 3], data: new Float32Array(96) };`),
      bad(`const y: FlowEulerInputs['y'] = { dtype: 'f32', shape: [2], data: new Float32Array(2) };`),
      bad(`const r: SampleRequest = { labels: 3, steps: 10, cfg: 1.5, seed: 0 };`)]);
    expect(good).toEqual([]);
    expect(shape!.join()).toMatch(/Type '3' is not assignable to type '4'/);
    expect(dtype!.join()).toMatch(/Type '"f32"' is not assignable to type '"i32"'/);
    expect(label!.join()).toMatch(/Type '3' is not assignable to type 'ClassLabel/);
  });
});

describe('kiln export / kiln serve (CLI)', () => {
  for (const cmd of ['export', 'serve']) {
    it(`kiln ${cmd} --help lists every option with its default`, () => {
      const r = kiln([cmd, '--help']);
      expect(r.code).toBe(0);
      const optionLines = r.stdout.split('\n\n').find((b) => b.startsWith('Options:'))!.split(/\n(?=  -)/).slice(1).filter((l) => !l.includes('--help'));
      expect(optionLines.length).toBeGreaterThan(1);
      for (const l of optionLines) expect(l.replace(/\s+/g, ' '), l).toMatch(/default|choices|required/);
    });
  }

  it('kiln --help lists export and serve', () => {
    const h = kiln(['--help']).stdout;
    expect(h).toMatch(/\n  export /);
    expect(h).toMatch(/\n  serve /);
  });

  it('mistakes are one line and exit 2: a folder that is not a bundle, a bad --steps, serving a non-bundle', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-web-cli-'));
    const oneLine = (args: string[], msg: RegExp) => {
      const r = kiln(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(STACK_LINE);
    };
    const t = writeTinyGenerator(dir);
    mkdirSync(join(dir, 'full'));
    writeFileSync(join(dir, 'full', 'notes.txt'), 'mine');
    oneLine(['export', t.dit, '--model', t.spec, '--target', 'web', '--out', join(dir, 'full')], /not empty and is not a Kiln web bundle/);
    oneLine(['export', t.dit, '--model', t.spec, '--target', 'web', '--steps', '1', '--out', join(dir, 'o')], /--steps: 1 must be an integer >= 2/);
    expect(existsSync(join(dir, 'o'))).toBe(false); // checked before anything is written
    expect(existsSync(join(dir, 'full', 'notes.txt'))).toBe(true);
    oneLine(['serve', join(dir, 'full')], /not a Kiln web bundle \(no bundle\.json\)/);
  }, 60_000);
});
