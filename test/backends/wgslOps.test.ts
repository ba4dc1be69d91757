/**
 * Every op test on the WGSL backend: the op test files (test/ops) run here again with runOp recording
 * each f32 call (its one-op graph, feeds and the CPU backend's result); then every recorded graph is
 * compiled for 'wgsl' and its output compared with the CPU result. Integers and bools must be equal;
 * floats equal within 1e-5·(1 + |cpu|) for the exactly rounded ops (+ − × ÷, casts, comparisons,
 * movement, rounding to f16/bf16, ...), and within 1e-3·(1 + |cpu|) where the GPU's transcendental
 * functions or summation order differ (as the random-graph tests); infinities must match, NaN matches
 * NaN, and −0 matches +0 (WGSL does not promise signed zeros). The reference is the CPU backend or,
 * where they differ, the kernel-IR interpreter: some op tests pin the CPU backend's double-precision
 * accumulation (a bf16 sum that rounds once, a mean of 3e38s that does not overflow), where compiled
 * kernels accumulate in f32 by the kernel IR's definition (backends/kernel/interpreter.ts).
 */
import { describe, expect, it } from 'vitest';
import { kernelCpuBackend } from '../../backends/kernel/executable.ts';
import { wgslBackend } from '../../backends/wgsl/executable.ts';
import { isFloat } from '../../ir/dtype.ts';
import { type OpCall, recordOps } from '../ops/helpers.ts';
import { runOnBackend } from '../support/backendRun.ts';

const calls: OpCall[] = recordOps();
await import('../ops/elementwise.test.ts');
await import('../ops/reduce_movement.test.ts');
await import('../ops/composite.test.ts');

const EXACT = new Set(['add', 'sub', 'mul', 'div', 'neg', 'abs', 'sign', 'floor', 'ceil', 'max', 'min', 'cast', 'select', 'where', 'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or', 'xor', 'not',
  'reshape', 'transpose', 'broadcast', 'slice', 'concat', 'pad', 'gather', 'iota', 'expand', 'permute', 'squeeze', 'unsqueeze', 'mod']);

describe('op tests replayed on the WGSL backend', () => {
  it('every recorded op call equals the CPU backend', async () => {
    const seen = new Set<string>();
    const bad: string[] = [];
    const compilerFailures: string[] = [];
    let n = 0;
    for (const c of calls) {
      const key = `${c.op}|${JSON.stringify(c.graph.nodes.map((x) => [x.op, x.attrs]))}|${JSON.stringify(Object.values(c.feeds).map((f) => [f.dtype, f.shape, Array.from(f.data as ArrayLike<number>)]))}`;
      if (seen.has(key)) continue;
      seen.add(key);
      n++;
      let got;
      try {
        got = (await runOnBackend(wgslBackend, c.graph, c.feeds)).out!;
      } catch (e) {
        // A compiler failure (the kernel interpreter fails the same way) is not the backend's: listed below.
        const compiles = await runOnBackend(kernelCpuBackend, c.graph, c.feeds).then(() => true, () => false);
        if (!compiles) {
          compilerFailures.push(`${c.op} ${Object.values(c.feeds).map((f) => `${f.dtype}[${f.shape.join(',')}]`).join(' ')}`);
          continue;
        }
        bad.push(`${c.op} ${JSON.stringify(c.graph.nodes.map((x) => [x.op, x.attrs]))} ${Object.values(c.feeds).map((f) => `${f.dtype}[${f.shape.join(',')}]`).join(' ')}: ${(e as Error).message.slice(0, 300)}`);
        continue;
      }
      const tol = EXACT.has(c.op) ? 1e-5 : 1e-3;
      const a = got.data, b = c.out.data;
      const same = (x: number, y: number) => (!isFloat(c.out.dtype) ? x === y : Number.isNaN(y) ? Number.isNaN(x) : !Number.isFinite(y) ? x === y : Math.abs(x - y) <= tol * (1 + Math.abs(y)));
      let kern: ArrayLike<number> | undefined;
      for (let i = 0; i < b.length; i++) {
        const x = a[i]!, y = b[i]!;
        let ok = same(x, y);
        if (!ok) {
          kern ??= (await runOnBackend(kernelCpuBackend, c.graph, c.feeds)).out!.data;
          ok = same(x, kern[i]!);
        }
        if (!ok) {
          bad.push(`${c.op} ${c.out.dtype}[${c.out.shape.join(',')}] [${i}]: wgsl ${x}, cpu ${y}, kernel-cpu ${kern?.[i]} (inputs ${Object.values(c.feeds).map((f) => `${f.dtype}[${Array.from(f.data as ArrayLike<number>).slice(0, 6).join(',')}${f.data.length > 6 ? ',…' : ''}]`).join(' ')})`);
          break;
        }
      }
    }
    console.log(`wgsl: ${n} distinct op calls replayed`);
    expect(bad).toEqual([]);
    // Every op call compiles (a concat of empty inputs did not lower until main fixed it, 2026-12-01).
    expect(compilerFailures).toEqual([]);
  }, 600_000);
});
