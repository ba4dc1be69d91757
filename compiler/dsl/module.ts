/**
 * @file Module and Parameter: the DSL's PyTorch-like building blocks.
 *
 * A Module's parameters are found by walking its own properties in definition order: a Parameter
 * property `weight` is named `weight`, a sub-Module property `attn` prefixes `attn.`, and an array
 * of Modules `blocks` prefixes `blocks.0.`, `blocks.1.` ... This gives the PyTorch state_dict keys
 * (`blocks.0.attn.qkv.weight`) as long as properties are named as in the PyTorch reference.
 * A Parameter is usable as a Tensor inside a trace: it resolves to the trace's input for it.
 */
import type { DType } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Shape } from '../../ir/shape.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { type Init, initValues } from './init.ts';
import { Tensor } from './tensor.ts';
import { type TraceContext, activeTrace } from './trace.ts';

export class Parameter extends Tensor {
  /** The state_dict key, assigned when its module tree is first walked. */
  name: string | undefined;
  readonly declaredShape: Shape;
  readonly declaredDType: DType;
  constructor(
    shape: Shape,
    readonly init: Init,
    dtype: DType = 'f32',
    /** False for frozen parameters (pretrained encoders, fixed position tables): no gradient is taken. */
    public trainable = true,
  ) {
    super(undefined, -1);
    this.declaredShape = [...shape];
    this.declaredDType = dtype;
  }
  override get ctx(): TraceContext {
    return activeTrace();
  }
  override get id(): number {
    return activeTrace().paramId(this);
  }
  override get shape(): Shape {
    return this.declaredShape;
  }
  override get dtype(): DType {
    return this.declaredDType;
  }
  override get type() {
    return { shape: this.declaredShape, dtype: this.declaredDType };
  }
}

export abstract class Module {
  /** (name, parameter) pairs in state_dict order. */
  namedParameters(prefix = ''): Array<[string, Parameter]> {
    const out: Array<[string, Parameter]> = [];
    const seen = new Set<Parameter>();
    const join = (path: string, k: string | number) => (path ? `${path}.${k}` : `${k}`);
    const visit = (v: unknown, path: string): void => {
      if (v instanceof Parameter) {
        if (seen.has(v)) return; // a shared (tied) parameter appears once, under its first name
        seen.add(v);
        v.name = path;
        out.push([path, v]);
      } else if (v instanceof Module) {
        for (const [k, c] of Object.entries(v)) visit(c, join(path, k));
      } else if (Array.isArray(v)) {
        v.forEach((c, i) => visit(c, join(path, i)));
      }
    };
    visit(this, prefix.replace(/\.$/, ''));
    return out;
  }

  /** Sub-modules by dotted path (this module is ''). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const base = prefix.replace(/\.$/, '');
    const out: Array<[string, Module]> = [[base, this]];
    const visit = (v: unknown, name: string): void => {
      if (v instanceof Module) out.push(...v.namedModules(name));
      else if (Array.isArray(v)) v.forEach((c, i) => visit(c, `${name}.${i}`));
    };
    for (const [k, c] of Object.entries(this)) visit(c, base ? `${base}.${k}` : k);
    return out;
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Total number of parameter elements. */
  numParams(): number {
    return this.parameters().reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  }

  /**
   * Initial values of every parameter, keyed by state_dict name. Deterministic for a seed; each
   * parameter draws from its own Philox stream, a hash of its name, so adding or removing one
   * parameter leaves the others' initial values unchanged.
   */
  initState(seed = 0): Map<string, HostTensor> {
    const m = new Map<string, HostTensor>();
    for (const [name, p] of this.namedParameters()) m.set(name, initValues(p.init, p.shape, p.dtype, seed, nameStream(name)));
    return m;
  }

  /** Freeze or unfreeze every parameter. */
  requiresGrad(on: boolean): this {
    for (const p of this.parameters()) p.trainable = on;
    return this;
  }
}

/** Check that `state` has exactly the module's parameter names and shapes; returns it as a record. */
export function checkState(module: Module, state: ReadonlyMap<string, HostTensor>, source = 'state'): void {
  const missing: string[] = [];
  for (const [name, p] of module.namedParameters()) {
    const t = state.get(name);
    if (!t) missing.push(name);
    else if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
      throw new KilnError(`${source}: '${name}' has shape [${t.shape.join(',')}], the model expects [${p.shape.join(',')}]`);
  }
  if (missing.length) throw new KilnError(`${source}: missing ${missing.length} parameter(s): ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
}

/** FNV-1a hash of a parameter name: its Philox stream for initialization. */
export function nameStream(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
