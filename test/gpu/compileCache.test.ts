/**
 * @file GPU: the CUDA build cache (backends/cuda/build.ts) and parallel NVRTC (nvrtcPool.ts). A second
 * build of the same program compiles nothing and reads the launch list and CUBINs; a corrupt CUBIN is
 * compiled again (that unit only); programs built from the cache compute what the first build does
 * (to 1e-4 relative: the step's attention backward accumulates by atomics, whose order varies from run
 * to run), as does the one-module path. test/gpu/cuda.test.ts runs the rest of the suite on the cached,
 * deduplicated path.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCuda } from '../../backends/cuda/build.ts';
import { CudaDriver } from '../../backends/cuda/driver.ts';
import { CudaExecutable } from '../../backends/cuda/executable.ts';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import { hostTensor, type HostTensor } from '../../ir/tensor.ts';
import { numel } from '../../ir/shape.ts';
import { cudaOptionsFromEnv } from '../../runtime/backends.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { cachedProgram } from '../../runtime/programCache.ts';
import { defaultResident } from '../../runtime/session.ts';

const dir = mkdtempSync(join(tmpdir(), 'kiln-gpu-cache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function runOnce(exe: CudaExecutable, g: ReturnType<typeof buildProgram>): Promise<number[]> {
  const init = new Map<string, HostTensor>();
  for (const i of g.inputs)
    if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.05)));
  for (const [k, v] of defaultResident(g, init)) await exe.write(k, v);
  const feeds: Record<string, HostTensor> = {};
  for (const i of g.inputs) {
    if (i.kind !== 'data') continue;
    const n = numel(i.type.shape);
    feeds[i.name] = i.name === 'lr' ? hostTensor('f32', [], [1e-3]) : i.type.dtype === 'i32' ? hostTensor('i32', i.type.shape, Array.from({ length: n }, (_, k) => k % 10))
      : i.type.dtype === 'u32' ? hostTensor('u32', i.type.shape, Array.from({ length: n }, (_, k) => k + 1)) : hostTensor(i.type.dtype, i.type.shape, Array.from({ length: n }, (_, k) => Math.sin(k * 0.37)));
  }
  const out = await exe.run(feeds);
  return Object.keys(out).sort().flatMap((k) => Array.from(out[k]!.data as ArrayLike<number>));
}

function expectClose(b: number[], a: number[]): void {
  expect(b.length).toBe(a.length);
  const bad = a.findIndex((x, i) => !(Math.abs(b[i]! - x) <= 1e-4 * (1 + Math.abs(x))) && !(Number.isNaN(x) && Number.isNaN(b[i]!)));
  expect(bad, `element ${bad}: ${b[bad]} vs ${a[bad]}`).toBe(-1);
}

describe('CUDA build cache', () => {
  it('a second build compiles nothing; a corrupt CUBIN is compiled again; results agree', async () => {
    const g = atPrecision(buildProgram('block', { train: true, batch: 4, size: '64x4x16' }), 'bf16');
    const options = { ...cudaOptionsFromEnv(), cacheDir: dir };
    const cuda = CudaDriver.get(options.libDir);
    const { program, key } = cachedProgram(g, () => compile(g).program, { dir: join(dir, 'programs') });
    const cold = await buildCuda(cuda, program, options, key);
    expect(cold.compiled).toBe(cold.gen.units.length);
    const a = await runOnce(new CudaExecutable(g, program, options, { built: cold }), g);
    const warm = await buildCuda(cuda, program, options, key);
    expect(warm.compiled).toBe('cache');
    const b = await runOnce(new CudaExecutable(g, program, options, { built: warm }), g);
    expectClose(b, a);
    // Corrupt one CUBIN: the build is redone, NVRTC compiles only that unit.
    const cubins = readdirSync(join(dir, 'cubin')).filter((f) => f.endsWith('.cubin'));
    writeFileSync(join(dir, 'cubin', cubins[0]!), 'not an ELF file');
    const repaired = await buildCuda(cuda, program, options, key);
    expect(repaired.compiled).toBe(1);
    expectClose(await runOnce(new CudaExecutable(g, program, options, { built: repaired }), g), a);
    // The one-module path (KILN_NVRTC_SERIAL) computes the same.
    expectClose(await runOnce(new CudaExecutable(g, program, options), g), a);
  });
});
