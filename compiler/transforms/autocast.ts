/**
 * @file Mixed precision as a graph transform: `autocast(graph, { dtype: 'bf16' | 'f16' })` runs every
 * f32 matmul, attention and attention_grad on low-precision operands (bf16 on CUDA, f16 on WGSL) and
 * leaves everything else in f32.
 *
 * The IR convention it relies on: matmul / attention / attention_grad with bf16 (f16) operands produce a
 * bf16 (f16) result accumulated in f32 (MatmulKernel.accDType = 'f32'; the CPU oracle accumulates in
 * f64 and rounds once). So the rewrite of one node is
 *     %y : f32 = matmul %a, %b
 *  →  %y : f32 = cast(matmul(cast(%a, bf16), cast(%b, bf16)), f32)
 * (the same for the three attention operands, the five attention_grad operands).
 *
 * What stays f32, and why nothing else needs a rule: the transform changes no input, so master weights
 * and optimizer state (trainStep makes its slots from the parameters' types) stay f32; every op other
 * than the three above keeps its f32 operands, so norms and their statistics, softmax (the attention
 * composite's own statistics are f32 too: ir/decompose.ts widens narrow operands), reductions, losses,
 * the gradient-norm clip and the optimizer update are computed exactly as before.
 *
 * Where the low-precision result becomes f32 again: immediately at the matmul / attention output. The
 * values that enter and leave the tensor-core op are rounded exactly where PyTorch autocast rounds them
 * (operands cast to bf16, the result rounded to bf16: torch.mm under autocast returns bf16), so users see
 * PyTorch's numbers at the op boundaries. After that PyTorch keeps running bf16 elementwise ops (bias,
 * GELU, gating) until an op on its fp32 list or a type promotion; here the epilogue that follows is
 * computed in f32 instead — at least as accurate, and free: fusion puts that epilogue in the matmul's
 * kernel, in registers, so nothing is stored in f32 that was not stored before, and a value that
 * feeds another matmul is stored in bf16 because its cast is materialized in the producing kernel.
 * It also keeps the transform local: every value other than a matmul/attention result keeps its
 * original dtype, so the rest of the graph is untouched and every op's dtype rules still hold.
 *
 * Where the casts go, so that fusion folds them (no kernel does only a cast):
 * - an operand's cast is put below its view chain (reshape / permute / broadcast / slice), on the
 *   value the views start from, and the views are re-applied on top: a matmul operand `cast(W)ᵀ` folds
 *   into the matmul's load (W read as f32 and rounded on the fly), a materialized cast is stored in
 *   the producer's natural layout and the views still fold into the consumer's load;
 * - one cast per value: the forward matmul, the backward matmuls and attention share it;
 * - a value that already is the low-precision result cast to f32 (`cast(mm_bf16, f32)`) is used as
 *   `mm_bf16` directly (the round trip is exact), so a matmul or attention result feeding another
 *   tensor-core op is passed on in bf16 without a cast pair.
 *
 * With the training step: apply it to the forward graph before `trainStep` (the VJP of a cast is the
 * cast back; the VJPs of bf16 matmuls are bf16 matmuls and attention_grad), or to the whole step (what
 * runtime/compile.ts compileOn does with its `precision` option): the backward's f32 matmuls are then
 * rewritten the same way and share the forward's casts. The two compile to the same kernels (the same
 * count for the LightningDiT step and the MLP: test/compiler/autocast.test.ts); the forward-first step's
 * backward also moves some bf16 data exactly (pad, the VJP of slice). The optimizer is never touched.
 *
 * Only f32 nodes are rewritten: a node whose operands are already narrow (or integer) is left alone,
 * so autocast is idempotent and a model that chose its own dtypes keeps them. `dtype: 'f32'` returns
 * the graph unchanged. f16 has a narrow range (max 65504): training in f16 needs loss scaling, which is
 * not done here (bf16 has f32's range and needs none).
 */
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { Attrs, OpName } from '../../ir/ops.ts';
import { verify } from '../../ir/verify.ts';
import { dumpGraph } from '../debug.ts';
import { dce } from '../passes/dce.ts';
import { copyNode, rewriteGraph } from '../../ir/rewrite.ts';

/** The precisions a program can be compiled in: f32 everywhere, or tensor-core ops in bf16 / f16. */
export const PRECISIONS = ['f32', 'bf16', 'f16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface AutocastOptions {
  /** The dtype of matmul and attention operands; 'f32' leaves the graph as it is. */
  dtype: Precision;
}

/** The ops whose operands autocast lowers (everything else stays in its original dtype). */
export const LOW_PRECISION_OPS: ReadonlySet<OpName> = new Set<OpName>(['matmul', 'attention', 'attention_grad']);

const VIEW_OPS: ReadonlySet<string> = new Set(['reshape', 'permute', 'broadcast', 'slice']);

export function isPrecision(s: unknown): s is Precision {
  return typeof s === 'string' && (PRECISIONS as readonly string[]).includes(s);
}

/** Check a precision named by a user (an option, a flag); `where` names it in the error. */
export function checkPrecision(s: unknown, where = 'autocast: dtype'): Precision {
  if (!isPrecision(s)) throw new KilnError(`${where} '${String(s)}' is not a precision (${PRECISIONS.join(', ')})`);
  return s;
}

interface Def {
  readonly op: OpName;
  readonly inputs: readonly number[];
  readonly attrs: Attrs;
}

export function autocast(g: Graph, opts: AutocastOptions): Graph {
  const low = checkPrecision(opts?.dtype);
  if (low === 'f32') return g;
  const rewritten = (ins: readonly number[], typeOf: (id: number) => string) => ins.every((i) => typeOf(i) === 'f32');
  if (!g.nodes.some((n) => LOW_PRECISION_OPS.has(n.op) && rewritten(n.inputs, (i) => g.typeOf(i).dtype))) return g;

  // Definitions of the new graph's values (to walk view chains and find casts back to f32).
  const defs = new Map<number, Def>();
  const lowOf = new Map<number, number>();
  const out = dce(rewriteGraph(g, (n, ins, b) => {
    const emit = (op: OpName, inputs: readonly number[], attrs: Attrs): number => {
      const id = b.op(op, inputs, attrs, n.loc);
      defs.set(id, { op, inputs, attrs });
      return id;
    };
    /** The value `id` in the low dtype: one cast per value, below its views. */
    const lowered = (id: number): number => {
      const memo = lowOf.get(id);
      if (memo !== undefined) return memo;
      const d = defs.get(id);
      let r: number;
      if (d && VIEW_OPS.has(d.op)) r = emit(d.op, [lowered(d.inputs[0]!)], d.attrs);
      else if (d?.op === 'cast' && b.typeOf(d.inputs[0]!).dtype === low) r = d.inputs[0]!;
      else r = emit('cast', [id], { dtype: low });
      lowOf.set(id, r);
      return r;
    };
    if (LOW_PRECISION_OPS.has(n.op) && rewritten(ins, (i) => b.typeOf(i).dtype)) {
      const y = emit(n.op, ins.map(lowered), n.attrs);
      return emit('cast', [y], { dtype: 'f32' });
    }
    const id = copyNode(n, ins, b);
    defs.set(id, { op: n.op, inputs: ins, attrs: n.attrs });
    return id;
  }));
  verify(out);
  dumpGraph('ir', `autocast(${low})`, out);
  return out;
}
