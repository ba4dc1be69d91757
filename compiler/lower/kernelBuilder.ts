/**
 * @file Builds the body of one kernel from graph nodes: `valueAt(node, index)` returns the expression
 * for one element of a node's value, inlining everything that is not materialized in a buffer
 * (elementwise ops, views folded into index maps, gathers as indexed loads) and turning reductions
 * over the kernel's row axes into reduction phases. Values become `let`s placed in the outermost
 * block whose loop variables they use, so row-invariant work is hoisted out of row loops.
 *
 * Whether a node can be inlined here is decided by one predicate, `inlineBlocker` (an op that has
 * its own kernel, an op an operand expression may not apply, a reduction over other axes or read at
 * another point than the one it was reduced for). The builder does not throw on it: it records the
 * first blocked node in `needs` and stops building, so that the fusion analysis (inspectKernel)
 * learns which value must be in memory, and lowering of a legal fusion plan never meets one.
 */
import type { DType } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { I, bin, cast, konst, linearIndex, load, ref, select, simplifyIndex, un } from '../../ir/kernel/expr.ts';
import { ExprInterner, children, treeSizeAtLeast } from '../../ir/kernel/intern.ts';
import type { Expr, ReduceKind, Stmt } from '../../ir/kernel/types.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../../ir/ops.ts';
import { opSpec } from '../../ir/ops.ts';
import { type Shape, numel, stridesOf } from '../../ir/shape.ts';
import { broadcastIndex, clampIndex, padIndex, permuteIndex, reshapeIndex, sliceIndex } from './views.ts';

/** Values whose tree is smaller than this many nodes are bound as they are (see shareIndices). */
const SHARE_MIN_VALUE = 256;
/** Smallest shared index sub-expression (tree nodes) that shareIndices binds to a let of its own. */
const SHARE_MIN_SUB = 24;

/** `x` with its direct sub-expressions replaced by `cs` (in children() order); `x` itself when unchanged. */
function withChildren(x: Expr, cs: readonly Expr[]): Expr {
  const old = children(x);
  if (cs.every((c, i) => c === old[i])) return x;
  switch (x.k) {
    case 'load': return { ...x, index: cs[0]! };
    case 'un': case 'cast': return { ...x, a: cs[0]! };
    case 'bin': return { ...x, a: cs[0]!, b: cs[1]! };
    case 'select': return { ...x, c: cs[0]!, a: cs[1]!, b: cs[2]! };
    case 'random': return { ...x, s0: cs[0]!, s1: cs[1]!, index: cs[2]! };
    default: return x;
  }
}

/** A value a kernel cannot compute inline: it must be in memory (materialized) first. */
export interface Blocker {
  readonly node: number;
  readonly why: string;
}

/** The kernel's row structure: the node shape it iterates over and the axes its reductions cover. */
export interface RowSpace {
  readonly shape: Shape;
  readonly axes: readonly number[];
}

interface Block {
  readonly stmts: Stmt[];
  readonly loopVar?: string;
  readonly depth: number;
}

export interface BuilderOptions {
  /** Expressions only (matmul/attention operands): no lets, no reductions; `allow` limits the ops. */
  inlineOnly?: boolean;
  allow?: (op: string) => boolean;
}

export class KernelBuilder {
  readonly ext = new Map<string, number>();
  /** Non-materialized graph nodes this kernel computes (for the fusion driver's sharing analysis). */
  readonly visited = new Set<number>();
  /** How many times each of them is computed (row kernels may compute a value in several passes). */
  readonly evaluations = new Map<number, number>();
  readonly root: Block = { stmts: [], depth: 0 };
  private stack: Block[] = [this.root];
  private readonly memo = new Map<string, { e: Expr; block: Block }>();
  private readonly refBlock = new Map<string, Block>();
  private readonly reduceAcc = new Map<number, Expr>();
  /** Structural ids of expressions (memo keys in time linear in DAG size). */
  private readonly intern = new ExprInterner();
  /** Index sub-expressions already bound to lets (by structural id), see shareIndices. */
  private readonly sharedIndex = new Map<number, { e: Expr; block: Block }>();
  /** Simplified index expressions by structural id (see simp). */
  private readonly simplified = new Map<number, Expr>();
  /** Simplified linear indices of loads, by index and shape (see linearOf). */
  private readonly linearIndices = new Map<string, Expr>();
  private counter = 0;
  gridVars: Expr[] = [];
  row: RowSpace | undefined;
  /** The first value met that cannot be inlined here (building stops there); undefined when none. */
  needs: Blocker | undefined;

  constructor(
    readonly g: Graph,
    /** Value id → buffer id for everything already in memory (inputs, materialized nodes, constants). */
    readonly buffers: ReadonlyMap<number, number>,
    /** Nodes computed by this kernel even though they have buffers (the kernel's own roots). */
    readonly computing: ReadonlySet<number>,
    readonly opts: BuilderOptions = {},
  ) {}

  fresh(prefix: string): string {
    return `${prefix}${this.counter++}`;
  }

  defineVar(name: string, extent: number): Expr {
    // The index simplifier memoizes per extents map and relies on extents never changing once set.
    const had = this.ext.get(name);
    if (had !== undefined && had !== extent) throw new KilnError(`lowering: loop variable ${name} redefined with extent ${extent} (was ${had})`);
    this.ext.set(name, extent);
    return I.v(name);
  }

  /** Set up grid vars for a row space: grid = non-row axes of `row.shape`. */
  setRow(row: RowSpace): void {
    this.row = row;
    let k = 0;
    this.gridVars = row.shape.flatMap((d, i) => (row.axes.includes(i) ? [] : [this.defineVar(`g${k++}`, d)]));
  }

  /** Index over the full row space with row axes decomposed from one flat row variable. */
  fullIndex(rowVar: Expr): Expr[] {
    const row = this.row!;
    const rowDims = row.axes.map((a) => row.shape[a]!);
    const rs = stridesOf(rowDims);
    let gi = 0;
    return row.shape.map((d, i) => {
      const j = row.axes.indexOf(i);
      if (j < 0) return this.gridVars[gi++]!;
      return this.simp(bin('mod', bin('div', rowVar, I.c(rs[j]!)), I.c(d)));
    });
  }

  rowExtent(): number {
    return this.row!.axes.reduce((n, a) => n * this.row!.shape[a]!, 1);
  }

  /**
   * simplifyIndex, once per structure in this kernel: view maps build new but equal index
   * expressions at every visit (reshape's div/mod of a linearized index), and the simplifier's own
   * memo is by object. Exact: the simplifier is a pure function of the expression's structure and the
   * extents of its variables, every variable is defined before an expression uses it, and defined
   * extents never change (defineVar).
   */
  simp(e: Expr): Expr {
    if (e.k === 'const' || e.k === 'var' || (e.dtype !== 'i32' && e.dtype !== 'bool')) return e;
    const id = this.intern.id(e);
    let r = this.simplified.get(id);
    if (r === undefined) this.simplified.set(id, (r = simplifyIndex(e, this.ext)));
    return r;
  }

  private onStack(b: Block): boolean {
    return this.stack.includes(b);
  }

  /**
   * The simplified row-major linear index of `sidx` (simplified) in a value of `shape`, once per index
   * and shape in this kernel (loads of every buffer of a shape at one point share it; the simplifier
   * is a pure function of the expression's structure and the extents of its variables, which never
   * change once defined, so the result is the one computing it again would give).
   */
  private linearOf(key: string, sidx: readonly Expr[], shape: Shape): Expr {
    const k = `${key.slice(key.indexOf('@'))}|${shape.join(',')}`;
    let e = this.linearIndices.get(k);
    if (e === undefined) this.linearIndices.set(k, (e = this.simp(linearIndex(sidx, stridesOf(shape)))));
    return e;
  }

  /** The innermost block on the stack that `x` (a var or a ref) ties a value to, when deeper than `target`. */
  private deeper(x: Expr, target: Block): Block {
    let b: Block | undefined;
    if (x.k === 'var') {
      for (const s of this.stack) if (s.loopVar === x.name) { b = s; break; }
    } else if (x.k === 'ref') b = this.refBlock.get(x.name);
    return b && b.depth > target.depth && this.onStack(b) ? b : target;
  }

  /** The outermost block whose variables the tree of `x` uses, at least `target` (walks the tree). */
  private blockOfTree(x: Expr, target: Block): Block {
    target = this.deeper(x, target);
    switch (x.k) {
      case 'load': return this.blockOfTree(x.index, target);
      case 'un': case 'cast': return this.blockOfTree(x.a, target);
      case 'bin': return this.blockOfTree(x.b, this.blockOfTree(x.a, target));
      case 'select': return this.blockOfTree(x.b, this.blockOfTree(x.a, this.blockOfTree(x.c, target)));
      case 'random': return this.blockOfTree(x.index, this.blockOfTree(x.s1, this.blockOfTree(x.s0, target)));
      default: return target;
    }
  }

  /** blockOfTree visiting each DAG node once (a large value's tree may be exponentially larger than its DAG). */
  private blockOfDag(x: Expr, target: Block, seen: Set<Expr>): Block {
    if (seen.has(x)) return target;
    seen.add(x);
    target = this.deeper(x, target);
    for (const c of children(x)) target = this.blockOfDag(c, target, seen);
    return target;
  }

  /** Bind `e` to a let in the outermost block whose variables it uses; returns the ref. */
  private bind(e: Expr, key: string): Expr {
    if (this.opts.inlineOnly || e.k === 'const' || e.k === 'var' || e.k === 'ref') return e;
    const large = treeSizeAtLeast(e, SHARE_MIN_VALUE);
    const target = large ? this.blockOfDag(e, this.stack[0]!, new Set()) : this.blockOfTree(e, this.stack[0]!);
    const value = large ? this.shareIndices(e, target) : e;
    const name = this.fresh('v');
    target.stmts.push({ k: 'let', name, value });
    const r = ref(name, e.dtype);
    this.refBlock.set(name, target);
    this.memo.set(key, { e: r, block: target });
    return r;
  }

  /**
   * `e` (to be bound in `target`) with its large shared index sub-expressions bound to lets of their
   * own in `target` (or reused from an enclosing block). View chains through pads and gathers leave
   * index expressions the simplifier cannot collapse (clamps, data-dependent indices) whose DAGs
   * reuse each operand index in every axis: written out as trees they grow exponentially with the
   * chain (1.5 MB of kernel text for a 6-round chain, fuzzRepros/open-index-blowup), and every
   * consumer of kernel IR (printer, interpreter, code generators) walks them as trees. Binding an
   * i32/bool sub-expression used more than once keeps kernels linear in the chain. Only values
   * whose tree has at least SHARE_MIN_VALUE nodes are rewritten, and only sub-expressions of at
   * least SHARE_MIN_SUB nodes are bound, so ordinary kernels are unchanged.
   */
  private shareIndices(e: Expr, target: Block): Expr {
    const it = this.intern;
    const uses = new Map<number, number>();
    const counted = new Set<number>();
    const count = (x: Expr): void => {
      const id = it.id(x);
      if (counted.has(id)) return;
      counted.add(id);
      for (const c of children(x)) {
        const cid = it.id(c);
        uses.set(cid, (uses.get(cid) ?? 0) + 1);
        count(c);
      }
    };
    count(e);
    const rebuilt = new Map<number, Expr>();
    const rebuild = (x: Expr): Expr => {
      const id = it.id(x);
      const done = rebuilt.get(id);
      if (done) return done;
      const bindable = x !== e && (x.dtype === 'i32' || x.dtype === 'bool') && (x.k === 'bin' || x.k === 'select' || x.k === 'un' || x.k === 'cast') &&
        treeSizeAtLeast(x, SHARE_MIN_SUB);
      const prev = bindable ? this.sharedIndex.get(id) : undefined;
      let r: Expr;
      if (prev && this.onStack(prev.block) && prev.block.depth <= target.depth) r = prev.e;
      else {
        r = withChildren(x, children(x).map(rebuild));
        if (bindable && (uses.get(id) ?? 0) >= 2) {
          const name = this.fresh('v');
          target.stmts.push({ k: 'let', name, value: r });
          this.refBlock.set(name, target);
          r = ref(name, x.dtype);
          this.sharedIndex.set(id, { e: r, block: target });
        }
      }
      rebuilt.set(id, r);
      return r;
    };
    return rebuild(e);
  }

  /** Open a sequential block for loop variable `v`; returns a function that closes it. */
  openBlock(v: string): { block: Block; close: () => void } {
    const block: Block = { stmts: [], loopVar: v, depth: this.stack.length };
    this.stack.push(block);
    return { block, close: () => void this.stack.pop() };
  }

  /** Emit a statement into the current innermost block. */
  emit(s: Stmt): void {
    this.stack[this.stack.length - 1]!.stmts.push(s);
  }

  /** The expression for element `idx` of value `id`. */
  valueAt(id: number, idx: readonly Expr[]): Expr {
    if (this.needs) return konst(0, this.g.typeOf(id).dtype);
    // (Loops, not map/join closures: this runs for every element expression of every inspection.)
    const sidx: Expr[] = new Array(idx.length);
    let key = `${id}@`;
    for (let i = 0; i < idx.length; i++) {
      const x = (sidx[i] = this.simp(idx[i]!));
      key += i ? `,${this.intern.id(x)}` : `${this.intern.id(x)}`;
    }
    const hit = this.memo.get(key);
    if (hit && this.onStack(hit.block)) return hit.e;
    const t = this.g.typeOf(id);
    // An empty value has no element to read: its reads only sit in kernels over an empty grid or in
    // the branch of a pad/concat whose condition is always false. Nothing is loaded (a clamped
    // index would still read element 0 of a zero-size buffer) and nothing is computed.
    if (numel(t.shape) === 0) return konst(0, t.dtype);
    const buf = this.buffers.get(id);
    if (buf !== undefined && !this.computing.has(id)) return this.bind(load(buf, this.linearOf(key, sidx, t.shape), t.dtype), key);
    const node = this.g.node(id);
    if (!node) throw new KilnError(`lowering: value %${id} has no buffer and no defining node`);
    const why = this.inlineBlocker(node, sidx);
    if (why !== undefined) {
      this.needs = { node: id, why };
      return konst(0, t.dtype);
    }
    this.visited.add(id);
    this.evaluations.set(id, (this.evaluations.get(id) ?? 0) + 1);
    return this.bind(this.compute(node, sidx), key);
  }

  /**
   * Why `n`, read at `idx`, cannot be computed inline in this kernel (undefined when it can): the
   * one rule fusion (through inspectKernel) and lowering share.
   */
  inlineBlocker(n: Node, idx: readonly Expr[]): string | undefined {
    if (this.opts.allow && !this.opts.allow(n.op)) return `${n.op} is not allowed in this kernel's operand`;
    switch (opSpec(n.op).category) {
      case 'unary': case 'binary': case 'compare': case 'logical': case 'ternary': case 'cast': case 'source': case 'random': case 'movement':
        return undefined;
      case 'index': return n.op === 'gather' ? undefined : 'scatter_add is computed by its own kernels';
      case 'reduce': return this.reductionBlocker(n, idx);
      default: return `${n.op} is computed by its own kernel`;
    }
  }

  /** A reduction inlines as a phase only over the kernel's row axes, read at the grid point it was reduced for. */
  private reductionBlocker(n: Node, idx: readonly Expr[]): string | undefined {
    if (this.opts.inlineOnly) return 'reductions are not allowed in operand expressions';
    const row = this.row;
    const inShape = this.g.typeOf(n.inputs[0]!).shape;
    const axes = n.op === 'argmax' ? [n.attrs.axis as number] : (n.attrs.axes as number[]);
    const fits = row && row.axes.length === axes.length && row.axes.every((x, i) => x === axes[i]) &&
      row.shape.length === inShape.length && row.shape.every((d, i) => d === inShape[i]);
    if (!fits) return 'its axes or shape differ from the kernel row space';
    // The read must be at this grid point: kept coordinates equal the grid vars, reduced ones 0.
    const keep = n.attrs.keepdims as boolean;
    const kept = keep ? idx.filter((_, i) => !axes.includes(i)) : idx;
    const zeros = keep ? idx.filter((_, i) => axes.includes(i)) : [];
    const ok = kept.length === this.gridVars.length && kept.every((e, i) => this.intern.id(e) === this.intern.id(this.gridVars[i]!)) &&
      zeros.every((z) => z.k === 'const' && z.v === 0);
    return ok ? undefined : 'it is read at another point than the one it was reduced for';
  }

  /** Element `idx` of operand `k` of elementwise node `n` (broadcast to n's shape). */
  private operand(n: Node, k: number, idx: readonly Expr[]): Expr {
    const id = n.inputs[k]!;
    return this.valueAt(id, broadcastIndex(idx, this.g.typeOf(id).shape, n.type.shape));
  }

  private compute(n: Node, idx: Expr[]): Expr {
    const a = n.attrs;
    switch (opSpec(n.op).category) {
      case 'unary': return un(n.op as UnaryOp, this.operand(n, 0, idx));
      case 'binary': case 'compare': case 'logical': return bin(n.op as BinaryOp | CompareOp | LogicalOp, this.operand(n, 0, idx), this.operand(n, 1, idx));
      case 'ternary': return select(this.operand(n, 0, idx), this.operand(n, 1, idx), this.operand(n, 2, idx));
      case 'cast': return cast(this.valueAt(n.inputs[0]!, idx), n.type.dtype);
      case 'source':
        if (n.op === 'iota') return cast(idx[a.axis as number]!, n.type.dtype);
        if (typeof a.value === 'number') return konst(a.value, n.type.dtype);
        throw new KilnError(`lowering: list constant %${n.id} has no buffer`);
      case 'random':
        return {
          k: 'random', dist: n.op === 'random_uniform' ? 'uniform' : 'normal', dtype: n.type.dtype, stream: a.stream as number,
          s0: this.valueAt(n.inputs[0]!, [I.c(0)]), s1: this.valueAt(n.inputs[0]!, [I.c(1)]),
          index: this.simp(linearIndex(idx, stridesOf(n.type.shape))),
        };
      case 'movement': return this.movement(n, idx, this.g.typeOf(n.inputs[0]!).shape);
      case 'index': {
        const axis = a.axis as number;
        const x = this.g.typeOf(n.inputs[0]!);
        const ir = this.g.typeOf(n.inputs[1]!).shape.length;
        const j = this.valueAt(n.inputs[1]!, idx.slice(axis, axis + ir));
        const at = clampIndex(j, x.shape[axis]!);
        return this.valueAt(n.inputs[0]!, [...idx.slice(0, axis), at, ...idx.slice(axis + ir)]);
      }
      case 'reduce': return this.reduction(n);
      default:
        throw new KilnError(`lowering: ${n.op} %${n.id} reached compute past inlineBlocker`);
    }
  }

  private movement(n: Node, idx: Expr[], from: Shape): Expr {
    const a = n.attrs;
    const x = n.inputs[0]!;
    switch (n.op) {
      case 'reshape': return this.valueAt(x, reshapeIndex(idx, from, n.type.shape));
      case 'permute': return this.valueAt(x, permuteIndex(idx, a.perm as number[]));
      case 'broadcast': return this.valueAt(x, broadcastIndex(idx, from, n.type.shape));
      case 'slice': return this.valueAt(x, sliceIndex(idx, a.starts as number[], a.steps as number[]));
      case 'pad': {
        if (numel(from) === 0) return konst(a.value as number, n.type.dtype); // all padding
        const p = padIndex(idx, a.before as number[], a.after as number[], from);
        const v = this.valueAt(x, p.idx);
        const valid = p.valid && this.simp(p.valid);
        if (!valid || (valid.k === 'const' && valid.v)) return v;
        return select(valid, v, konst(a.value as number, n.type.dtype));
      }
      case 'concat': {
        const axis = a.axis as number;
        const parts = n.inputs.map((id) => ({ id, len: this.g.typeOf(id).shape[axis]! }));
        let off = parts.reduce((s, p) => s + p.len, 0);
        let e: Expr | undefined;
        for (let k = parts.length - 1; k >= 0; k--) {
          const p = parts[k]!;
          off -= p.len;
          if (p.len === 0) continue;
          const local = this.simp(bin('sub', idx[axis]!, I.c(off)));
          const pi = idx.map((v, i) => (i === axis ? (k === parts.length - 1 && off === 0 ? local : clampIndex(local, p.len)) : v));
          const v = this.valueAt(p.id, pi);
          const inPart = this.simp(bin('lt', idx[axis]!, I.c(off + p.len)));
          e = e === undefined || (inPart.k === 'const' && inPart.v) ? v : select(inPart, v, e);
        }
        return e!; // defined: some operand is non-empty, since valueAt never computes an empty concat
      }
      default:
        throw new KilnError(`lowering: unknown movement op ${n.op}`);
    }
  }

  /** A reduction read at its own grid point (inlineBlocker checked that): a phase over the row axes, emitted once. */
  private reduction(n: Node): Expr {
    const done = this.reduceAcc.get(n.id);
    if (done) return done;
    // Emit the phase at grid level (outside any row loop being built right now).
    const saved = this.stack;
    this.stack = [this.root];
    const rv = this.fresh('r');
    this.defineVar(rv, this.rowExtent());
    const { block, close } = this.openBlock(rv);
    const value = this.valueAt(n.inputs[0]!, this.fullIndex(I.v(rv)));
    close();
    const acc = this.fresh('acc');
    const inDType = this.g.typeOf(n.inputs[0]!).dtype;
    const op: ReduceKind = n.op === 'reduce_max' ? 'max' : n.op === 'reduce_min' ? 'min' : n.op === 'argmax' ? 'argmax' : 'sum';
    const accDType: DType = op === 'argmax' ? 'i32' : inDType === 'f16' || inDType === 'bf16' ? 'f32' : inDType;
    this.root.stmts.push({ k: 'reduce', acc, op, dtype: accDType, var: rv, extent: this.rowExtent(), body: block.stmts, value });
    this.refBlock.set(acc, this.root);
    let r: Expr = ref(acc, accDType);
    if (n.op === 'reduce_mean') r = bin('div', r, konst(this.rowExtent(), accDType));
    r = cast(r, n.type.dtype);
    if (r.k !== 'ref') {
      const name = this.fresh('v');
      this.root.stmts.push({ k: 'let', name, value: r });
      this.refBlock.set(name, this.root);
      r = ref(name, r.dtype);
    }
    this.reduceAcc.set(n.id, r);
    this.stack = saved;
    return r;
  }
}

/** Row-major linear index of `idx` in a value of shape `shape`, simplified. */
export function linearAt(b: KernelBuilder, idx: readonly Expr[], shape: Shape): Expr {
  return b.simp(linearIndex(idx, stridesOf(shape)));
}

