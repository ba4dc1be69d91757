/**
 * @file The compiled-program cache (runtime/programCache.ts, backends/cacheEntry.ts): a hit returns the
 * program the compiler made, without compiling; a changed graph, option or Kiln version misses; a
 * corrupt or truncated entry is compiled again and replaced; shared kernel-IR sub-expressions stay
 * shared on disk; a cached program computes what a freshly compiled one does.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { kernelCpuBackend } from '../../backends/kernel/executable.ts';
import { buildProgram } from '../../cli/programs.ts';
import { decodeShared, encodeShared } from '../../backends/cacheEntry.ts';
import { compile } from '../../compiler/compile.ts';
import type { Expr } from '../../ir/kernel/types.ts';
import { hostTensor } from '../../ir/tensor.ts';
import type { Backend, CompileInfo } from '../../backends/backend.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { compileOn } from '../../runtime/compile.ts';
import { cachedProgram, defaultProgramCacheDir, kilnVersion, programKey } from '../../runtime/programCache.ts';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'kiln-progcache-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const mlpStep = (batch = 4) => buildProgram('mlp', { train: true, batch });

describe('compiled-program cache', () => {
  it('misses, then hits without compiling; the hit is the program the compiler made', () => {
    const dir = tempDir();
    const g = mlpStep();
    let compiles = 0;
    const make = () => (compiles++, compile(g).program);
    const first = cachedProgram(g, make, { dir });
    expect(first.hit).toBe(false);
    expect(compiles).toBe(1);
    const second = cachedProgram(g, make, { dir });
    expect(second.hit).toBe(true);
    expect(compiles).toBe(1);
    expect(second.key).toBe(first.key);
    expect(second.program).toEqual(first.program);
    // One entry, no temporary files left behind.
    expect(readdirSync(dir)).toEqual([`${first.key}.program.json`]);
  });

  it('misses on another graph, other options, or another Kiln version', () => {
    const dir = tempDir();
    const g = mlpStep(4);
    const make = () => compile(g).program;
    cachedProgram(g, make, { dir });
    expect(cachedProgram(mlpStep(8), () => compile(mlpStep(8)).program, { dir }).hit).toBe(false);
    expect(cachedProgram(g, make, { dir, extra: { noMerge: true } }).hit).toBe(false);
    expect(cachedProgram(g, make, { dir, version: `${kilnVersion()}-next` }).hit).toBe(false);
    expect(cachedProgram(g, make, { dir }).hit).toBe(true);
    expect(programKey(g)).toBe(programKey(mlpStep(4)));
    expect(programKey(g)).not.toBe(programKey(g, {}, 'other-version'));
  });

  it('compiles a corrupt or truncated entry again and replaces it', () => {
    const dir = tempDir();
    const g = mlpStep();
    const make = () => compile(g).program;
    const { key, program } = cachedProgram(g, make, { dir });
    const file = join(dir, `${key}.program.json`);
    const whole = readFileSync(file, 'utf8');
    for (const bad of ['garbage', whole.slice(0, whole.length >> 1), '', JSON.stringify({ kind: 'program', key: 'another', value: {} }), whole.replace('"$ref":', '"$ref":9999999,"x":')]) {
      writeFileSync(file, bad);
      const again = cachedProgram(g, make, { dir });
      expect(again.hit).toBe(false);
      expect(again.program).toEqual(program);
      expect(readFileSync(file, 'utf8')).toBe(whole);
    }
  });

  it('keeps shared sub-expressions shared, and Maps, typed arrays, -0, NaN and infinities', () => {
    const leaf: Expr = { k: 'var', name: 'g0', dtype: 'i32' };
    let e: Expr = leaf;
    for (let i = 0; i < 40; i++) e = { k: 'bin', op: 'add', a: e, b: e, dtype: 'i32' }; // a tree of 2^40 nodes
    const text = JSON.stringify(encodeShared({ e }));
    expect(text.length).toBeLessThan(10_000);
    const back = decodeShared(JSON.parse(text)) as { e: Expr };
    expect((back.e as { a: Expr; b: Expr }).a).toBe((back.e as { a: Expr; b: Expr }).b);
    const odd = { m: new Map<number, string>([[1, 'a']]), t: new Float32Array([1.5, -2]), z: -0, n: NaN, i: [Infinity, -Infinity], $x: 1 };
    const r = decodeShared(JSON.parse(JSON.stringify(encodeShared(odd)))) as typeof odd;
    expect(r.m).toEqual(odd.m);
    expect(r.t).toBeInstanceOf(Float32Array);
    expect([...r.t]).toEqual([1.5, -2]);
    expect(Object.is(r.z, -0)).toBe(true);
    expect(r.n).toBeNaN();
    expect(r.i).toEqual([Infinity, -Infinity]);
    expect(r.$x).toBe(1);
  });

  it('a cached program computes what a freshly compiled one does', async () => {
    const dir = tempDir();
    const g = buildProgram('mlp', { train: false, batch: 2 });
    const make = () => compile(g).program;
    cachedProgram(g, make, { dir });
    const cached = cachedProgram(g, make, { dir });
    expect(cached.hit).toBe(true);
    const run = async (p: typeof cached.program) => {
      const exe = await kernelCpuBackend.compile(g, p);
      for (const i of g.inputs)
        if (i.kind !== 'data') await exe.write(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: i.type.shape.reduce((a, b) => a * b, 1) }, (_, k) => Math.sin(k) * 0.1)));
      const feeds = Object.fromEntries(g.inputs.filter((i) => i.kind === 'data').map((i) => [i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: i.type.shape.reduce((a, b) => a * b, 1) }, (_, k) => Math.cos(k * 0.3)))]));
      return exe.run(feeds);
    };
    expect(await run(cached.program)).toEqual(await run(make()));
  });

  it('lives in KILN_CACHE_DIR/programs (or ~/.cache/kiln/programs); KILN_PROGRAM_CACHE=off turns it off', () => {
    expect(defaultProgramCacheDir({ KILN_CACHE_DIR: '/tmp/k' })).toBe('/tmp/k/programs');
    expect(defaultProgramCacheDir({})).toMatch(/\.cache\/kiln\/programs$/);
    expect(defaultProgramCacheDir({ KILN_CACHE_DIR: '/tmp/k', KILN_PROGRAM_CACHE: 'off' })).toBeUndefined();
  });

  it('compileOn reads the program from the cache the second time and hands the backend its key', async () => {
    const dir = tempDir();
    const seen: Array<{ program?: KernelProgram; info?: CompileInfo }> = [];
    const backend: Backend = {
      name: 'recorder', consumes: 'kernels',
      compile: async (g, program, info) => (seen.push({ program, info }), kernelCpuBackend.compile(g, program)),
    };
    const g = mlpStep();
    await compileOn(backend, g, { precision: 'f32', cacheDir: dir });
    expect(readdirSync(dir)).toHaveLength(1);
    await compileOn(backend, g, { precision: 'f32', cacheDir: dir });
    expect(seen[1]!.program).toEqual(seen[0]!.program);
    expect(seen[0]!.info?.cacheKey).toBe(programKey(g));
    expect(seen[1]!.info?.cacheKey).toBe(seen[0]!.info?.cacheKey);
    // No cache folder: no key (a backend must not cache by it).
    await compileOn(backend, g, { precision: 'f32', cacheDir: '' });
    expect(seen[2]!.info?.cacheKey).toBeUndefined();
  });
});
