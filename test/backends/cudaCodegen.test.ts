/**
 * Every generated CUDA module must compile: CUDA C++ from the kernel programs of random graphs and of
 * real training steps, compiled to PTX with nvcc (this machine has nvcc but no GPU; the GPU suite in
 * test/gpu runs the same code on a GPU). Also pins how matmuls are planned (cuBLAS vs generated SGEMM).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import type { Graph } from '../../ir/graph.ts';
import { randomGraph } from '../support/randomGraph.ts';

const run = promisify(execFile);
const nvcc = await run('nvcc', ['--version']).then(() => true, () => false);

const programs: Array<[string, () => Graph]> = [
  ...Array.from({ length: 16 }, (_, s) => [`random graph ${s}`, () => randomGraph(s, { finiteF32: s % 2 === 0 })] as [string, () => Graph]),
  ['MLP training step', () => buildProgram('mlp', { train: true, batch: 16 })],
  ['transformer block training step', () => buildProgram('block', { train: true, batch: 2, size: '64x4x16' })],
  ['TarFlow training step', () => buildProgram('tarflow', { train: true, batch: 2, size: 'tinyCond' })],
  ['FAE stage Ia training step', () => buildProgram('fae', { train: true, batch: 2, size: 'tiny' })],
];

describe.skipIf(!nvcc)('generated CUDA compiles with nvcc', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cuda-'));
  it('all programs (compiled to PTX for sm_90 in parallel)', async () => {
    const jobs = programs.map(async ([name, make], i) => {
      const file = join(dir, `m${i}.cu`);
      writeFileSync(file, generateCuda(compile(make()).program).source);
      try {
        await run('nvcc', ['-arch=sm_90', '--ptx', '-o', join(dir, `m${i}.ptx`), file]);
        return undefined;
      } catch (e) {
        return `${name}: ${String((e as { stderr?: string }).stderr ?? e).split('\n').filter((l) => l.includes('error')).slice(0, 3).join(' | ')}`;
      }
    });
    const errors = (await Promise.all(jobs)).filter((x) => x !== undefined);
    expect(errors).toEqual([]);
  }, 300_000);
});

describe('matmul planning', () => {
  it('plain strided f32 matmuls become cuBLAS SGEMMs; the rest generated SGEMM kernels', () => {
    const m = generateCuda(compile(buildProgram('block', { train: true, batch: 8, size: '768x12x256' })).program);
    const all = m.launches.flat();
    expect(all.filter((l) => l.kind === 'gemm').length).toBe(8);
    expect(all.filter((l) => l.kind === 'kernel' && l.fn.endsWith('_matmul')).length).toBe(4);
    expect(all.filter((l) => l.kind === 'kernel' && l.fn.endsWith('_epilogue')).length).toBe(6);
  });
});
