/**
 * The tiling stage (compiler/schedule/tiling.ts): which provider, operand staging, block tile and
 * stages each matmul gets, on the SM90 target and on a made-up small target; the schedule is in the
 * kernel IR and printed.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/compile.ts';
import { type GemmTarget, SM90, chooseTile, planOperand } from '../../compiler/schedule/tiling.ts';
import { I, konst, load } from '../../ir/kernel/expr.ts';
import { printProgram } from '../../ir/kernel/print.ts';
import { sharedBytes } from '../../ir/kernel/tile.ts';
import type { BufferDecl, Expr, MatmulKernel } from '../../ir/kernel/types.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import { type GemmCase, gemmGraph } from '../support/gemmCases.ts';

function tiled(c: GemmCase, target: GemmTarget = SM90): MatmulKernel {
  const k = compile(gemmGraph(c), { target }).program.kernels.find((x) => x.kind === 'matmul');
  if (k?.kind !== 'matmul' || !k.tile) throw new Error('no tiled matmul');
  return k;
}

const base = { name: 't', m: 4096, n: 4096, k: 4096 };

describe('tiling stage', () => {
  it('bf16 operands go to tensor cores with mma.sync m16n8k16 and f32 accumulation', () => {
    const t = tiled(base).tile!;
    expect(t.provider).toBe('tensor-core');
    expect(t.mma).toMatchObject({ family: 'mma.sync', m: 16, n: 8, k: 16, ab: 'bf16', acc: 'f32' });
    expect(t.source).toBe('default');
  });

  it('plain aligned bf16 loads are async; their contiguous dim is the major one, for every transposition', () => {
    expect(tiled(base).tile).toMatchObject({ a: { staging: 'async', major: 'k' }, b: { staging: 'async', major: 'mn' } });
    expect(tiled({ ...base, transA: true, transB: true }).tile).toMatchObject({ a: { staging: 'async', major: 'mn' }, b: { staging: 'async', major: 'k' } });
  });

  it('casts (f32 master weights), unaligned strides and ragged contiguous extents are register-staged', () => {
    expect(tiled({ ...base, srcB: 'cast', transB: true }).tile).toMatchObject({ a: { staging: 'async' }, b: { staging: 'registers', major: 'k' } });
    // K = 37: rows of a (K-major) are not 16-byte aligned, b ([37, 4096], N-major) is fine;
    // n = 131 (b is N-major): chunks would straddle the edge.
    expect(tiled({ ...base, k: 37 }).tile).toMatchObject({ a: { staging: 'registers', major: 'k' }, b: { staging: 'async', major: 'mn' } });
    expect(tiled({ ...base, n: 131 }).tile).toMatchObject({ a: { staging: 'async' }, b: { staging: 'registers', major: 'mn' } });
    expect(tiled({ ...base, k: 1 }).tile).toMatchObject({ a: { staging: 'registers' } });
  });

  it('a sliced operand whose contiguous extent is no multiple of 8 is register-staged even with an aligned row stride', () => {
    // a = x[:, :36] of x: bf16[256, 64] (row stride 64: aligned; a 16-byte chunk would straddle k = 36).
    const g = new GraphBuilder('sliced');
    const x = g.input('x', { shape: [256, 64], dtype: 'bf16' });
    const a = g.op('slice', [x], { starts: [0, 0], ends: [256, 36], steps: [1, 1] });
    const b = g.input('b', { shape: [36, 256], dtype: 'bf16' });
    const wt = g.input('w', { shape: [256, 64], dtype: 'bf16' });
    const bk = g.op('permute', [g.op('slice', [wt], { starts: [0, 0], ends: [256, 36], steps: [1, 1] })], { perm: [1, 0] });
    g.output('y', g.op('matmul', [a, b]));
    g.output('z', g.op('matmul', [a, bk]));
    const mms = compile(g.build()).program.kernels.filter((k) => k.kind === 'matmul');
    expect(mms.map((k) => k.kind === 'matmul' && k.tile && [k.tile.a.staging, k.tile.b.staging])).toEqual([['registers', 'async'], ['registers', 'registers']]);
  });

  it('block tile: the largest one that fills a wave of SMs; at most 128×128 when register-staged', () => {
    expect(tiled(base).tile).toMatchObject({ block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 2 }, stages: 4 });
    // 8×8 tiles of 128×128 = 64 blocks < 132 SMs → 64×64 (256).
    expect(tiled({ ...base, m: 1024, n: 1024 }).tile!.block).toEqual({ m: 64, n: 64, k: 32 });
    // 12×12 tiles of 128×128 = 144 blocks ≥ 132.
    expect(tiled({ ...base, m: 1536, n: 1536 }).tile!.block).toEqual({ m: 128, n: 128, k: 32 });
    // too small for one wave: the smallest tile
    expect(tiled({ ...base, m: 512, n: 1024 }).tile!.block).toEqual({ m: 64, n: 64, k: 32 });
    expect(tiled({ ...base, m: 1, n: 72, k: 96 }).tile!.block).toEqual({ m: 64, n: 64, k: 32 });
    const cast = tiled({ ...base, srcA: 'cast' }).tile!;
    expect(cast.block).toEqual({ m: 128, n: 128, k: 32 });
    expect(cast.stages).toBe(2);
    // batch counts toward the wave: 5 × (4×8 tiles of 128×128) = 160 blocks
    expect(tiled({ ...base, m: 512, n: 1024, batchA: [5], batchB: [5] }).tile!.block).toEqual({ m: 128, n: 128, k: 32 });
  });

  it('stages fill the target shared memory, every schedule fits it, and a target too small gets SIMT', () => {
    const small: GemmTarget = { ...SM90, name: 'small', sharedBytes: 70 * 1024 };
    const t = tiled({ ...base, transB: true }, small).tile!;
    expect(t.block).toEqual({ m: 128, n: 128, k: 32 });
    expect(t.stages).toBe(3); // 20 KiB per stage of 128×128×32 (both K-major), the epilogue's 68 KiB fits
    const tiny: GemmTarget = { ...SM90, name: 'tiny', sharedBytes: 16 * 1024 };
    expect(tiled(base, tiny).tile!.provider).toBe('simt');
    for (const target of [SM90, small]) expect(sharedBytes(tiled(base, target).tile!)).toBeLessThanOrEqual(target.sharedBytes);
  });

  it('f32 matmuls: plain strided operands → cuBLAS SGEMM, others → SIMT; no matrix instruction → SIMT', () => {
    const f32 = (m: number, n: number, k: number, a: 'load' | 'exp'): MatmulKernel => {
      const buffers: BufferDecl[] = [{ id: 0, dtype: 'f32', numel: m * k, kind: 'input' }, { id: 1, dtype: 'f32', numel: k * n, kind: 'input' }];
      const ld = (buf: number, idx: string[]) => ({ k: 'load' as const, buf, dtype: 'f32' as const, index: { k: 'bin' as const, op: 'add' as const, dtype: 'i32' as const, a: { k: 'bin' as const, op: 'mul' as const, dtype: 'i32' as const, a: { k: 'var' as const, name: idx[0]!, dtype: 'i32' as const }, b: { k: 'const' as const, v: buf ? n : k, dtype: 'i32' as const } }, b: { k: 'var' as const, name: idx[1]!, dtype: 'i32' as const } } });
      const A = ld(0, ['i', 'p']);
      const kernel: MatmulKernel = { kind: 'matmul', name: 'mm', nodes: [], batch: [], m, n, k, a: a === 'load' ? A : { k: 'un', op: 'exp', a: A, dtype: 'f32' }, b: ld(1, ['p', 'j']), accDType: 'f32', epilogue: [] };
      return { ...kernel, tile: chooseTile(kernel, buffers, SM90) };
    };
    expect(f32(64, 64, 64, 'load').tile!.provider).toBe('cublas');
    expect(f32(64, 64, 64, 'exp').tile!.provider).toBe('simt');
    expect(f32(1, 64, 64, 'load').tile!.provider).toBe('simt');
    const none: GemmTarget = { ...SM90, mma: [] };
    expect(tiled(base, none).tile!.provider).toBe('simt');
  });

  it('an operand read through a head-split layout (div/mod index) is M/N-major where its channel runs are contiguous', () => {
    // dW of the qkv projection: a(i < 2304 channels, p < 32768 tokens) = dQKV[i/768][p/256][(i/64)%12][p%256][i%64].
    const c = (x: number) => konst(x, 'i32');
    const bin = (op: 'add' | 'mul' | 'div' | 'mod', a: Expr, b: Expr): Expr => ({ k: 'bin', op, a, b, dtype: 'i32' });
    const [i, p] = [I.v('i'), I.v('p')];
    const index = [bin('mul', bin('div', i, c(768)), c(25165824)), bin('mul', bin('div', p, c(256)), c(196608)), bin('mul', bin('mod', bin('div', i, c(64)), c(12)), c(16384)), bin('mod', i, c(64)), bin('mul', bin('mod', p, c(256)), c(64))]
      .reduce((x, y) => bin('add', x, y));
    const buffers: BufferDecl[] = [{ id: 0, dtype: 'bf16', numel: 3 * 25165824, kind: 'temp' }, { id: 1, dtype: 'bf16', numel: 32768 * 768, kind: 'temp' }];
    const k: MatmulKernel = {
      kind: 'matmul', name: 'dw', nodes: [], batch: [], m: 2304, n: 768, k: 32768, accDType: 'f32', epilogue: [],
      a: load(0, index, 'bf16'), b: load(1, bin('add', bin('mul', p, c(768)), I.v('j')), 'bf16'),
    };
    expect(planOperand(k, 'a', buffers, 'bf16')).toEqual({ staging: 'registers', major: 'mn' });
    // The same layout read along the channel as K (dX = dQKV·W: a(i = token, p = channel)) stays K-major.
    const asK = { ...k, m: 32768, k: 2304, a: load(0, [bin('mul', bin('div', p, c(768)), c(25165824)), bin('mul', bin('div', i, c(256)), c(196608)), bin('mul', bin('mod', bin('div', p, c(64)), c(12)), c(16384)), bin('mod', p, c(64)), bin('mul', bin('mod', i, c(256)), c(64))].reduce((x, y) => bin('add', x, y)), 'bf16') };
    expect(planOperand(asK, 'a', buffers, 'bf16')).toEqual({ staging: 'registers', major: 'k' });
  });

  it('the schedule is printed with the kernel (kiln compile --kernels)', () => {
    const text = printProgram(compile(gemmGraph({ ...base, transB: true })).program);
    expect(text).toContain('tile tensor-core block=128x128x32 warps=2x2 stages=4 mma=mma.sync.m16n8k16.bf16 a=async/k b=async/k (default)');
  });
});
