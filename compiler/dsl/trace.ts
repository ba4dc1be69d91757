/**
 * @file Tracing: running model code with symbolic Tensors records a Graph IR.
 *
 *   const g = trace('mlp', (t) => {
 *     const x = t.input('x', [8, 784]);
 *     return { logits: model.forward(x) };
 *   }, { params: model });
 *
 * Parameters of `params` (a Module, or several) become graph inputs of kind 'param' (or 'frozen'
 * when not trainable) named by their PyTorch state_dict keys, in state_dict order, whether or not the function uses them.
 * Random ops draw from one seed input `rng_seed` (u32[2]) created on first use; each random op
 * gets its own Philox stream id, so a traced program is deterministic given its seed.
 */
import type { DType } from '../../ir/dtype.ts';
import { KilnError, ShapeError } from '../../ir/errors.ts';
import { type Graph, GraphBuilder, type InputKind } from '../../ir/graph.ts';
import type { Attrs, OpName, ValueType } from '../../ir/ops.ts';
import type { Shape } from '../../ir/shape.ts';
import { dumpGraph } from '../debug.ts';
import { callerLocation } from './loc.ts';
import type { Module, Parameter } from './module.ts';
import { Tensor } from './tensor.ts';

export const RNG_SEED_INPUT = 'rng_seed';

export class TraceContext {
  readonly builder: GraphBuilder;
  private readonly paramIds = new Map<Parameter, number>();
  private seedId: number | undefined;
  private nextStream = 0;

  /**
   * Where op locations come from: 'stack' (the model line calling the DSL; tracing) or 'fixed'
   * (whatever `loc` is set to; used by graph transforms, whose nodes inherit the location of the
   * node they were derived from).
   */
  locMode: 'stack' | 'fixed' = 'stack';
  loc: string | undefined;

  constructor(name: string, builder?: GraphBuilder) {
    this.builder = builder ?? new GraphBuilder(name);
  }

  /** Wrap an existing value id of this context's builder as a Tensor. */
  wrap(id: number): Tensor {
    this.builder.typeOf(id);
    return new Tensor(this, id);
  }

  /** Declare a graph input (a batch, a label vector, a learning rate...). */
  input(name: string, shape: Shape, dtype: DType = 'f32', kind: InputKind = 'data'): Tensor {
    return new Tensor(this, this.builder.input(name, { shape, dtype }, kind));
  }

  /** Record op `op`; shape errors name the model source line that called it. */
  op(op: OpName, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
    const ids = inputs.map((t) => {
      if (t.ctx !== this) throw new KilnError(`${op}: a tensor from another trace was used (did a Tensor escape its trace?)`);
      return t.id;
    });
    const loc = this.locMode === 'stack' ? callerLocation() : this.loc;
    return new Tensor(this, this.builder.op(op, ids, attrs, loc));
  }

  typeOf(id: number): ValueType {
    return this.builder.typeOf(id);
  }

  /**
   * Register parameters as inputs (idempotent); called by trace() for `params`. `kind` overrides the
   * input kind ('param' when trainable, else 'frozen'): e.g. 'state' for an EMA teacher's copy of a
   * model, updated by the program's own `next.` outputs (models/ssl/dino.ts).
   */
  registerParams(named: ReadonlyArray<readonly [string, Parameter]>, kind?: InputKind): void {
    for (const [name, p] of named) {
      if (this.paramIds.has(p)) continue;
      this.paramIds.set(p, this.builder.input(name, { shape: p.shape, dtype: p.dtype }, kind ?? (p.trainable ? 'param' : 'frozen')));
    }
  }

  paramId(p: Parameter): number {
    const id = this.paramIds.get(p);
    if (id === undefined)
      throw new KilnError(
        `parameter ${p.name ?? '(unnamed)'} ${p.dtype}[${p.shape.join(',')}] is used in a trace but its module was not passed in trace(..., { params })`,
      );
    return id;
  }

  /** The seed input (u32[2]) shared by every random op of this trace. */
  seed(): Tensor {
    if (this.seedId === undefined) this.seedId = this.builder.input(RNG_SEED_INPUT, { shape: [2], dtype: 'u32' }, 'data');
    return new Tensor(this, this.seedId);
  }

  /** A fresh Philox stream id for the next random op. */
  stream(): number {
    return this.nextStream++;
  }
}

const stack: TraceContext[] = [];

/** Run `fn` with `ctx` as the active trace (for transforms that build graphs with DSL tensors). */
export function withTrace<T>(ctx: TraceContext, fn: () => T): T {
  stack.push(ctx);
  try {
    return fn();
  } finally {
    stack.pop();
  }
}

/** The trace being recorded, or an error saying that DSL ops need one. */
export function activeTrace(): TraceContext {
  const t = stack[stack.length - 1];
  if (!t) throw new KilnError('no active trace: DSL tensor ops only run inside trace(name, fn)');
  return t;
}

export interface TraceOptions {
  /** Modules whose parameters become 'param' inputs (in state_dict order). */
  params?: Module | readonly Module[];
}

export type TraceOutputs = Tensor | Readonly<Record<string, Tensor>>;

/** Run `fn` symbolically and return the recorded graph; returned tensors become named outputs. */
export function trace(name: string, fn: (t: TraceContext) => TraceOutputs, opts: TraceOptions = {}): Graph {
  const ctx = new TraceContext(name);
  const mods = opts.params === undefined ? [] : Array.isArray(opts.params) ? opts.params : [opts.params as Module];
  for (const m of mods) ctx.registerParams(m.namedParameters());
  stack.push(ctx);
  try {
    const out = fn(ctx);
    const named: Record<string, Tensor> = out instanceof Tensor ? { out } : (out as Record<string, Tensor>);
    for (const [k, t] of Object.entries(named)) {
      if (!(t instanceof Tensor)) throw new KilnError(`trace ${name}: output '${k}' is not a Tensor`);
      ctx.builder.output(k, t.id);
    }
  } catch (e) {
    if (e instanceof ShapeError && !e.loc) {
      const loc = callerLocation();
      if (loc) throw e.withLoc(loc);
    }
    throw e;
  } finally {
    stack.pop();
  }
  const g = ctx.builder.build();
  dumpGraph('ir', `trace ${name}`, g);
  return g;
}
