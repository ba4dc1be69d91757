/**
 * @file Rematerialization as a graph transform: in a training step, choose which forward values the
 * backward reads from memory (kept live from the forward to the backward) and recompute the others in
 * the backward from the kept ones — the same graph, with the recomputed forward nodes copied once more
 * and the backward reading the copies. Results do not change (the copies compute the same values);
 * memory and FLOPs do.
 *
 * Which forward values are kept is a minimum cut, as in PyTorch's min-cut partitioner
 * (torch/_functorch/partitioners.py): every forward node v is an edge v_in → v_out whose capacity is
 * the bytes of v (the cost of keeping it); data edges u_out → v_in are uncuttable; graph inputs hang off
 * the source (free to read in the backward); every forward value the backward reads leads to the sink;
 * a node that may not be recomputed is joined to the source (so the cut must keep it, or keep what it
 * feeds). The minimum cut is the set of kept values with the fewest bytes from which the backward's
 * needs can be recomputed. Three modes:
 *  - `fused` (the first rung of compile's `auto`, the default): the cheap rules below, except that a
 *    value a backward matmul or attention reads as an operand (through views) is kept, never
 *    recomputed: an operand is a load of memory, so its recomputation would be a kernel of its own that
 *    writes what the forward had written already. What is recomputed then folds into the backward's
 *    elementwise and row kernels (a norm's scaled value from the normalized one and the weight, a bias
 *    add), so the forward stores less for about the same kernels and bytes (XL/1 batch 64 on an H200:
 *    171.6 ms off, 175.8 ms fused in one call, 170.4 ms fused in another; bench/RESULTS.md);
 *  - `cheap`: only cheap per-element work is recomputed — elementwise ops, casts,
 *    views, pad/concat, iota and constants; matmuls, attention, reductions (their outputs are small:
 *    norm statistics), random draws, gathers and scatters are never recomputed. So a bias add after a
 *    bf16 matmul is recomputed from the bf16 result instead of keeping its f32 sum, a SwiGLU's sigmoid
 *    from its input, a norm's normalized value from the residual stream and the statistics; the
 *    recomputed elementwise work folds into the backward's kernels (fusion inlines it).
 *  - `blocks` (activation checkpointing, `--remat blocks`): per repeated block of the model (the
 *    parameters named `<list>.<i>.…`: `blocks.3.attn.qkv.weight`), everything computed inside the
 *    block is recomputable, matmuls and attention included, and only values that leave a block (its
 *    output, the residual stream) can be kept: the backward of each block recomputes that block's
 *    forward from its input. Outside the blocks the cheap rules apply. A node's block is the last one
 *    whose parameters it depends on (so a parameter-free norm at the start of block i+1 belongs to
 *    block i, and the cut keeps the block boundary value, not the norm's output).
 *
 * What is forward and what is backward: the forward is every node the step's forward outputs (the
 * loss, metrics: every output but `next.*`, `grad.*` and `grad_norm`) depend on; the rest is the
 * backward and the optimizer. A graph without a backward (inference) is returned unchanged.
 *
 * The copies are placed right before their first backward reader in graph order, and their ids are
 * returned (`recomputed`) so that the kernel order stage runs their kernels only when a backward kernel
 * needs them (compiler/schedule/order.ts `deferred`); this transform runs after the graph passes (CSE
 * would merge the copies back into the originals) and before fusion (compiler/compile.ts).
 * `extraFlops` is what the copies compute (nodeFlops of each: matmuls 2·m·n·k, attention as the
 * report counts it, elementwise ops by elementFlops).
 */
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX, type Node } from '../../ir/graph.ts';
import type { OpName } from '../../ir/ops.ts';
import { GraphRewriter } from '../../ir/rewrite.ts';
import { numel } from '../../ir/shape.ts';
import { verify } from '../../ir/verify.ts';
import { dumpGraph } from '../debug.ts';
import { deviceBytes, nodeFlops } from '../fuse/cost.ts';
import { FlowNetwork } from './minCut.ts';

/** off: keep every forward value the backward reads; fused: recompute the elementwise chains that are no matmul operand; cheap: every elementwise chain; blocks: also whole blocks. */
export const REMAT_MODES = ['off', 'fused', 'cheap', 'blocks'] as const;
export type RematMode = (typeof REMAT_MODES)[number];

export function checkRematMode(s: unknown, where = 'remat'): RematMode {
  if (typeof s !== 'string' || !(REMAT_MODES as readonly string[]).includes(s)) throw new KilnError(`${where} '${String(s)}' is not a remat mode (${REMAT_MODES.join(', ')})`);
  return s as RematMode;
}

export interface RematResult {
  readonly graph: Graph;
  readonly mode: RematMode;
  /** Ids (in `graph`) of the recomputed copies. */
  readonly recomputed: ReadonlySet<number>;
  /**
   * The copies and the backward nodes that read copies but no gradient: what the kernel order runs
   * only when the backward needs it.
   */
  readonly deferred: ReadonlySet<number>;
  /** Ids (in `graph`) of the forward's nodes (those the copies must not be merged with). */
  readonly forward: ReadonlySet<number>;
  /** FLOPs of the recomputed copies (the step's extra work). */
  readonly extraFlops: number;
  /** Bytes of the forward values the backward reads, without remat (every one kept) and as chosen. */
  readonly keptBytesBefore: number;
  readonly keptBytesAfter: number;
  /** Repeated blocks found (blocks mode). */
  readonly blocks: number;
}

/** Ops that cheap remat recomputes: per element, no reductions, no randomness, no indexing. */
const CHEAP_OPS: ReadonlySet<string> = new Set<string>([
  'neg', 'abs', 'sign', 'exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'floor', 'ceil', 'not',
  'add', 'sub', 'mul', 'div', 'max', 'min', 'pow', 'mod', 'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or', 'xor',
  'where', 'cast', 'reshape', 'permute', 'broadcast', 'slice', 'pad', 'concat', 'iota', 'constant',
] satisfies OpName[]);
/** Views: never kept (keeping one keeps its source; the view itself folds into loads). */
const VIEW_OPS: ReadonlySet<string> = new Set(['reshape', 'permute', 'broadcast', 'slice']);
/** The most cheap ops in a row that one recomputation may repeat. */
export const MAX_CHAIN = 16;
/** Outputs that are not the forward's. */
const GRAD_NORM_OUTPUT = 'grad_norm';

const isForwardOutput = (name: string) => !name.startsWith(NEXT_PREFIX) && !name.startsWith('grad.') && name !== GRAD_NORM_OUTPUT;

/**
 * The repeated blocks of a graph: for each parameter that belongs to one, the block's position in
 * order of first appearance. A block is `<list>.<i>` (the first numbered part of the name:
 * `blocks.3.attn.qkv.weight` → `blocks.3`) where the list has two or more entries with the same
 * parameters (names after the prefix, and shapes) — a ModuleList of layers, not a Sequential of
 * different layers (`t_embedder.mlp.0`, `t_embedder.mlp.2`).
 */
function repeatedBlocks(g: Graph): Map<number, number> {
  const entries = new Map<string, Map<string, { ids: number[]; signature: string[] }>>();
  for (const i of g.inputs) {
    if (i.kind !== 'param' && i.kind !== 'frozen') continue;
    const m = /^((?:[^.]+\.)*?)(\d+)\.(.+)$/.exec(i.name);
    if (!m) continue;
    const [, list, index, rest] = m as unknown as [string, string, string, string];
    let l = entries.get(list);
    if (!l) entries.set(list, (l = new Map()));
    let e = l.get(index);
    if (!e) l.set(index, (e = { ids: [], signature: [] }));
    e.ids.push(i.id);
    e.signature.push(`${rest}:${i.type.dtype}[${i.type.shape.join(',')}]`);
  }
  const blockOf = new Map<number, string>();
  for (const [list, l] of entries) {
    const bySignature = new Map<string, string[]>();
    for (const [index, e] of l) {
      const key = e.signature.sort().join(' ');
      bySignature.set(key, [...(bySignature.get(key) ?? []), index]);
    }
    for (const indices of bySignature.values()) {
      if (indices.length < 2) continue;
      for (const index of indices) for (const id of l.get(index)!.ids) blockOf.set(id, `${list}${index}`);
    }
  }
  // Positions in order of first use by the graph's nodes.
  const position = new Map<string, number>();
  const out = new Map<number, number>();
  for (const n of g.nodes) for (const i of n.inputs) {
    const b = blockOf.get(i);
    if (b === undefined) continue;
    if (!position.has(b)) position.set(b, position.size);
    out.set(i, position.get(b)!);
  }
  return out;
}

/** The forward of a training step: the values (inputs included) that its forward outputs (the loss, metrics) depend on. */
export function forwardValues(g: Graph): Set<number> {
  const forward = new Set<number>();
  const stack = g.outputs.filter((o) => isForwardOutput(o.name)).map((o) => o.id);
  while (stack.length) {
    const v = stack.pop()!;
    if (forward.has(v)) continue;
    forward.add(v);
    const n = g.node(v);
    if (n) stack.push(...n.inputs);
  }
  return forward;
}

export function remat(g: Graph, mode: RematMode): RematResult {
  const unchanged = (keptBytes = 0): RematResult => ({ graph: g, mode, recomputed: new Set(), deferred: new Set(), forward: new Set(), extraFlops: 0, keptBytesBefore: keptBytes, keptBytesAfter: keptBytes, blocks: 0 });
  const forward = forwardValues(g);
  const isInput = (v: number) => g.input(v) !== undefined;
  const bytes = (v: number) => { const t = g.typeOf(v); return numel(t.shape) * deviceBytes(t.dtype); };
  /** Forward nodes (not inputs) the backward reads. */
  const needed = new Set<number>();
  for (const n of g.nodes) if (!forward.has(n.id)) for (const i of n.inputs) if (forward.has(i) && !isInput(i)) needed.add(i);
  const keptBytesBefore = [...needed].reduce((s, v) => s + (VIEW_OPS.has(g.node(v)!.op) ? 0 : bytes(v)), 0);
  if (mode === 'off' || needed.size === 0) return unchanged(keptBytesBefore);

  // fused: what a backward matmul or attention reads as an operand (through views) is kept, never recomputed.
  const pinned = mode === 'fused' ? operandValues(g, forward) : new Set<number>();
  // Blocks: a node's block is the last block (in order of first use) whose parameters it depends on.
  const label = mode === 'blocks' ? repeatedBlocks(g) : new Map<number, number>();
  const blockCount = new Set(label.values()).size;
  if (mode === 'blocks') {
    for (const n of g.nodes) {
      if (!forward.has(n.id)) continue;
      let l = -1;
      for (const i of n.inputs) l = Math.max(l, label.get(i) ?? -1);
      if (l >= 0) label.set(n.id, l);
    }
  }
  const users = g.users();
  const inBlock = (v: number) => !isInput(v) && (label.get(v) ?? -1) >= 0;
  /**
   * A value read by forward nodes of another block (or of no block), directly or through views: in
   * blocks mode it is the boundary from which the reader's block is recomputed, so it is kept, never
   * recomputed (else the cut would recompute every block from the model's inputs, for free).
   */
  const leavesBlock = (v: number): boolean => {
    const l = label.get(v);
    const reads = (x: number): boolean => (users.get(x) ?? []).some((u) => forward.has(u.id) && (label.get(u.id) !== l || (VIEW_OPS.has(u.op) && reads(u.id))));
    return reads(v);
  };
  const outputs = new Set(g.outputs.map((o) => o.id));
  const readByBlock = (v: number): boolean => (users.get(v) ?? []).some((u) => forward.has(u.id) && (inBlock(u.id) || (VIEW_OPS.has(u.op) && readByBlock(u.id))));

  // The flow network: vertex 2k = node k's _in, 2k+1 its _out; then source and sink.
  const index = new Map<number, number>();
  const fwdNodes = g.nodes.filter((n) => forward.has(n.id));
  fwdNodes.forEach((n, k) => index.set(n.id, k));
  const source = 2 * fwdNodes.length, sink = source + 1;
  const net = new FlowNetwork(sink + 1);
  const vin = (v: number) => 2 * index.get(v)!, vout = (v: number) => 2 * index.get(v)! + 1;
  const freeValue = (n: Node) => n.op === 'constant' || n.op === 'iota';
  // Long chains: a cheap node that would be recomputed through more than MAX_CHAIN cheap ops in a row
  // (views not counted) is not recomputed (after PyTorch's ban_recompute_long_fusible_chains):
  // otherwise the residual stream, an add or two per layer, would be recomputed in the backward from
  // the first layer's values on.
  const depth = new Map<number, number>();
  const banned = new Set<number>();
  for (const n of fwdNodes) {
    if ((mode === 'blocks' && inBlock(n.id)) || !CHEAP_OPS.has(n.op)) continue;
    let d = 0;
    for (const i of n.inputs) d = Math.max(d, depth.get(i) ?? 0);
    if (!VIEW_OPS.has(n.op)) d++;
    if (d > MAX_CHAIN && !VIEW_OPS.has(n.op)) banned.add(n.id); // (a view is never kept: its source is)
    else depth.set(n.id, d);
  }
  for (const n of fwdNodes) {
    // Philox draws recompute exactly, so blocks may recompute them.
    const boundary = mode === 'blocks' && !VIEW_OPS.has(n.op) && blockCount > 0 && leavesBlock(n.id) && (inBlock(n.id) || readByBlock(n.id));
    const recomputable = ((mode === 'blocks' && inBlock(n.id)) || CHEAP_OPS.has(n.op)) && !banned.has(n.id) && !boundary && !pinned.has(n.id);
    let keep: number;
    if (outputs.has(n.id) || freeValue(n)) keep = 0; // in memory anyway (an output), or no memory (constants)
    else if (VIEW_OPS.has(n.op)) keep = Infinity;
    else if (mode === 'blocks' && inBlock(n.id) && !leavesBlock(n.id)) keep = Infinity;
    else keep = bytes(n.id);
    net.addEdge(vin(n.id), vout(n.id), keep);
    if (!recomputable) net.addEdge(source, vin(n.id), Infinity);
    for (const i of n.inputs) {
      if (isInput(i)) continue; // inputs are free: no edge needed
      net.addEdge(vout(i), vin(n.id), Infinity);
    }
    if (needed.has(n.id)) net.addEdge(vout(n.id), sink, Infinity);
  }
  const { sourceSide } = net.minCut(source, sink);
  // Kept: the cut node edges (in on the source side, out on the sink side). Recomputed: what the
  // backward needs, walking up from its reads to kept values and inputs.
  const kept = new Set<number>();
  for (const n of fwdNodes) if (sourceSide[vin(n.id)] && !sourceSide[vout(n.id)]) kept.add(n.id);
  const recompute = new Set<number>();
  const walk = [...needed];
  while (walk.length) {
    const v = walk.pop()!;
    if (recompute.has(v) || kept.has(v) || isInput(v)) continue;
    const n = g.node(v)!;
    if (outputs.has(v) || freeValue(n)) continue; // read as it is
    recompute.add(v);
    walk.push(...n.inputs);
  }
  // A view of values that are not recomputed reads them where they are: the backward reads the
  // original view, not a copy (a copy would compute nothing, yet make its readers recomputation that
  // the kernel order defers and the merge keeps apart: an attention gradient's dQ/dK/dV split in three).
  for (const n of g.nodes) if (recompute.has(n.id) && VIEW_OPS.has(n.op) && !n.inputs.some((i) => recompute.has(i))) recompute.delete(n.id);
  const keptBytesAfter = [...kept].reduce((s, v) => s + (outputs.has(v) || freeValue(g.node(v)!) ? 0 : bytes(v)), 0);
  if (recompute.size === 0) return { ...unchanged(keptBytesBefore), keptBytesAfter: keptBytesBefore };

  // Rewrite: forward nodes copied as they are; before each backward node, the copies it reads.
  const rw = new GraphRewriter(g).copyInputs();
  const b = rw.builder;
  const copies = new Map<number, number>();
  const recomputed = new Set<number>();
  const forwardIds = new Set<number>();
  let extraFlops = 0;
  const copyOf = (v: number): number => {
    const memo = copies.get(v);
    if (memo !== undefined) return memo;
    const n = g.node(v)!;
    const ins = n.inputs.map((i) => (recompute.has(i) ? copyOf(i) : rw.get(i)));
    const id = b.op(n.op, ins, n.attrs, n.loc);
    copies.set(v, id);
    recomputed.add(id);
    extraFlops += nodeFlops(n, n.inputs.map((i) => g.typeOf(i).shape));
    return id;
  };
  for (const n of g.nodes) {
    if (forward.has(n.id)) {
      forwardIds.add(rw.node(n));
      continue;
    }
    const ins = n.inputs.map((i) => (recompute.has(i) ? copyOf(i) : rw.get(i)));
    rw.set(n.id, b.op(n.op, ins, n.attrs, n.loc));
  }
  rw.copyOutputs();
  const out = rw.build();
  // Backward nodes that read copies and no gradient (only copies, forward values, inputs and
  // constants: a SiLU's derivative factor) would be ready in the forward and pull the copies there:
  // they are deferred with the copies (`deferred`).
  const deferred = new Set(recomputed);
  for (const n of out.nodes) {
    if (deferred.has(n.id) || forwardIds.has(n.id)) continue;
    if (!n.inputs.some((i) => deferred.has(i))) continue;
    if (n.inputs.every((i) => deferred.has(i) || forwardIds.has(i) || out.input(i) !== undefined || out.node(i)?.op === 'constant')) deferred.add(n.id);
  }
  verify(out);
  dumpGraph('ir', `remat(${mode})`, out);
  return { graph: out, mode, recomputed, deferred, forward: forwardIds, extraFlops, keptBytesBefore, keptBytesAfter, blocks: blockCount };
}

/** Ops whose operands are loaded as they are in memory (views fold into their loads; no other op does). */
const OPERAND_OPS: ReadonlySet<string> = new Set<OpName>(['matmul', 'attention', 'attention_grad']);

/**
 * The forward values (not inputs) that a backward matmul or attention reads as an operand, directly or
 * through views: recomputed, each would be a kernel of its own in the backward (an operand is a load
 * of memory), so `fused` remat keeps them.
 */
function operandValues(g: Graph, forward: ReadonlySet<number>): Set<number> {
  const out = new Set<number>();
  const source = (v: number): number => {
    for (let n = g.node(v); n && VIEW_OPS.has(n.op); n = g.node(v)) v = n.inputs[0]!;
    return v;
  };
  for (const n of g.nodes) {
    if (forward.has(n.id) || !OPERAND_OPS.has(n.op)) continue;
    for (const i of n.inputs) {
      const s = source(i);
      if (forward.has(s) && g.input(s) === undefined) out.add(s);
    }
  }
  return out;
}
