/**
 * The WGSL backend's disk cache of generated shaders (backends/wgsl/sourceCache.ts), on SwiftShader in
 * CI: a first compile misses and stores, a second (a new executable, same program) hits and runs the
 * stored shaders to the same result; another generator version or other device limits miss; a corrupt
 * entry (garbage, or valid JSON with a damaged dispatch) is counted, regenerated and rewritten; keys
 * tell apart constants JSON cannot (NaN vs Infinity).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { wgslBackendWith } from '../../backends/wgsl/executable.ts';
import { DiskSourceCache, codegenVersion } from '../../backends/wgsl/sourceCache.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { firstMismatch } from '../support/compare.ts';

const dir = mkdtempSync(join(tmpdir(), 'kiln-wgsl-cache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function mlp(name: string, c = 0.5) {
  const b = new GraphBuilder(name);
  const x = b.input('x', { shape: [4, 6], dtype: 'f32' }), w = b.input('w', { shape: [6, 3], dtype: 'f32' });
  b.output('y', b.op('add', [b.op('tanh', [b.op('matmul', [x, w])]), b.op('constant', [], { shape: [4, 3], dtype: 'f32', value: c })]));
  const feeds: Record<string, HostTensor> = {
    x: hostTensor('f32', [4, 6], Array.from({ length: 24 }, (_, i) => Math.sin(i))),
    w: hostTensor('f32', [6, 3], Array.from({ length: 18 }, (_, i) => Math.cos(i))),
  };
  return { g: b.build(), feeds };
}

describe('WGSL shader disk cache', () => {
  it('the generator version is a hash of its source files', () => {
    expect(codegenVersion()).toMatch(/^[0-9a-f]{16}$/);
  });

  it('miss, store, hit (same result); another version or other limits miss; corrupt entries are regenerated', async () => {
    const { g, feeds } = mlp('cached');
    const want = runGraph(g, feeds).y!.data;
    const cache = new DiskSourceCache(join(dir, 'a'));
    const run = async (c: DiskSourceCache, limits = {}) => (await runOnBackend(wgslBackendWith({ sourceCache: c, ...limits }), g, feeds)).y!.data;

    expect(firstMismatch(await run(cache), want, 1e-5)).toBeUndefined();
    expect(cache.stats).toEqual({ hits: 0, misses: 1, corrupt: 0 });
    const files = readdirSync(cache.dir);
    expect(files.length).toBe(1);
    expect(firstMismatch(await run(cache), want, 1e-5)).toBeUndefined();
    expect(cache.stats).toEqual({ hits: 1, misses: 1, corrupt: 0 });

    // Another generator version: its own key.
    const other = new DiskSourceCache(cache.dir, 'another-version');
    await run(other);
    expect(other.stats.misses).toBe(1);
    expect(readdirSync(cache.dir).length).toBe(2);
    // Other device limits: another entry.
    await run(cache, { maxStorageBuffersPerShaderStage: 8, maxStorageBufferBindingSize: 4096 });
    expect(cache.stats.misses).toBe(2);

    // Corrupt entries: garbage, then a dispatch whose source is not a string.
    const file = join(cache.dir, files[0]!);
    writeFileSync(file, '{"key": "trunc');
    expect(firstMismatch(await run(cache), want, 1e-5)).toBeUndefined();
    expect(cache.stats.corrupt).toBe(1);
    const entry = JSON.parse(readFileSync(file, 'utf8'));
    expect(entry.dispatches.flat().length).toBeGreaterThan(0);
    entry.dispatches[0][0].source = 42;
    writeFileSync(file, JSON.stringify(entry));
    expect(firstMismatch(await run(cache), want, 1e-5)).toBeUndefined();
    expect(cache.stats.corrupt).toBe(2);
    await run(cache);
    expect(cache.stats.hits).toBe(2);
  });

  it('a program whose only difference is a NaN or an Infinity constant gets its own entry', async () => {
    const cache = new DiskSourceCache(join(dir, 'b'));
    for (const c of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const { g, feeds } = mlp('consts', c);
      const got = (await runOnBackend(wgslBackendWith({ sourceCache: cache }), g, feeds)).y!.data;
      expect(firstMismatch(got, runGraph(g, feeds).y!.data, 1e-5)).toBeUndefined();
    }
    expect(cache.stats).toEqual({ hits: 0, misses: 3, corrupt: 0 });
  });
});
