/**
 * @file The Graph IR: SSA values in topological order with named inputs and named outputs.
 *
 * Every value has one numeric id, unique in its graph. Inputs (data, trainable and frozen
 * parameters, and persistent state such as optimizer moments) define values; each node defines exactly one
 * value from earlier ones. Graphs are immutable: passes build new graphs with GraphBuilder.
 */
import { ShapeError } from './errors.ts';
import { type Attrs, type OpName, type ValueType, inferType } from './ops.ts';

/**
 * data: fed every run (batches, labels, learning rate, seeds). param: trainable parameters.
 * frozen: parameters that are not trained (pretrained encoders, fixed tables). state: optimizer
 * moments, EMA, step counters. Every kind but data stays resident on the backend between runs.
 */
export type InputKind = 'data' | 'param' | 'frozen' | 'state';
export const INPUT_KINDS: readonly InputKind[] = ['data', 'param', 'frozen', 'state'];

export interface GraphInput {
  readonly id: number;
  readonly name: string;
  readonly kind: InputKind;
  readonly type: ValueType;
}
export interface Node {
  readonly id: number;
  readonly op: OpName;
  readonly inputs: readonly number[];
  readonly attrs: Attrs;
  readonly type: ValueType;
  /** Model source location ("models/mlp.ts:12:7") of the call that created this node, if known. */
  readonly loc?: string;
}
export interface GraphOutput {
  readonly name: string;
  readonly id: number;
}

/**
 * Outputs named `next.<input>` give the value that a 'param' or 'state' input takes for the next run
 * (training steps update parameters and optimizer state this way).
 */
export const NEXT_PREFIX = 'next.';

/** Names of inputs and outputs: identifiers that may contain dots (PyTorch state_dict keys). */
export const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.]*$/;

export class Graph {
  private readonly types = new Map<number, ValueType>();
  private readonly nodeById = new Map<number, Node>();
  private readonly inputById = new Map<number, GraphInput>();

  constructor(
    readonly name: string,
    readonly inputs: readonly GraphInput[],
    readonly nodes: readonly Node[],
    readonly outputs: readonly GraphOutput[],
  ) {
    for (const i of inputs) {
      this.types.set(i.id, i.type);
      this.inputById.set(i.id, i);
    }
    for (const n of nodes) {
      this.types.set(n.id, n.type);
      this.nodeById.set(n.id, n);
    }
  }
  typeOf(id: number): ValueType {
    const t = this.types.get(id);
    if (!t) throw new Error(`graph ${this.name}: no value %${id}`);
    return t;
  }
  has(id: number): boolean {
    return this.types.has(id);
  }
  node(id: number): Node | undefined {
    return this.nodeById.get(id);
  }
  input(id: number): GraphInput | undefined {
    return this.inputById.get(id);
  }
  inputByName(name: string): GraphInput | undefined {
    return this.inputs.find((i) => i.name === name);
  }
  output(name: string): GraphOutput | undefined {
    return this.outputs.find((o) => o.name === name);
  }
  /** For each value id, the nodes that read it (in order). */
  users(): Map<number, Node[]> {
    const m = new Map<number, Node[]>();
    for (const n of this.nodes)
      for (const i of n.inputs) {
        const l = m.get(i);
        if (l) l.push(n);
        else m.set(i, [n]);
      }
    return m;
  }
}

/** Appends inputs and nodes to a graph under construction, inferring each node's type. */
export class GraphBuilder {
  private readonly inputs: GraphInput[] = [];
  private readonly nodes: Node[] = [];
  private readonly outputs: GraphOutput[] = [];
  private readonly types = new Map<number, ValueType>();
  private nextId = 0;

  constructor(readonly name: string) {
    if (!NAME_RE.test(name)) throw new Error(`graph name '${name}' is not a valid identifier`);
  }

  input(name: string, type: ValueType, kind: InputKind = 'data'): number {
    if (!NAME_RE.test(name)) throw new Error(`graph ${this.name}: input name '${name}' is not a valid identifier`);
    if (this.inputs.some((i) => i.name === name)) throw new Error(`graph ${this.name}: duplicate input '${name}'`);
    const id = this.nextId++;
    this.inputs.push({ id, name, kind, type: { shape: [...type.shape], dtype: type.dtype } });
    this.types.set(id, type);
    return id;
  }

  /** Append a node; throws ShapeError (with `loc` when given) if the op's rules are broken. */
  op(op: OpName, inputs: readonly number[], attrs: Attrs = {}, loc?: string): number {
    const ins = inputs.map((i) => {
      const t = this.types.get(i);
      if (!t) throw new Error(`graph ${this.name}: ${op} uses undefined value %${i}`);
      return t;
    });
    let type: ValueType;
    try {
      type = inferType(op, ins, attrs);
    } catch (e) {
      if (e instanceof ShapeError && loc) throw e.withLoc(loc);
      throw e;
    }
    const id = this.nextId++;
    const node: Node = loc ? { id, op, inputs: [...inputs], attrs, type, loc } : { id, op, inputs: [...inputs], attrs, type };
    this.nodes.push(node);
    this.types.set(id, type);
    return id;
  }

  output(name: string, id: number): void {
    if (!NAME_RE.test(name)) throw new Error(`graph ${this.name}: output name '${name}' is not a valid identifier`);
    if (this.outputs.some((o) => o.name === name)) throw new Error(`graph ${this.name}: duplicate output '${name}'`);
    if (!this.types.has(id)) throw new Error(`graph ${this.name}: output '${name}' names undefined value %${id}`);
    this.outputs.push({ name, id });
  }

  typeOf(id: number): ValueType {
    const t = this.types.get(id);
    if (!t) throw new Error(`graph ${this.name}: no value %${id}`);
    return t;
  }

  build(): Graph {
    return new Graph(this.name, [...this.inputs], [...this.nodes], [...this.outputs]);
  }
}
