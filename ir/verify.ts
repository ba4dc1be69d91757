/**
 * @file Graph verifier: SSA (one definition per id, definitions before uses), valid names,
 * and every node's recorded type equal to what its op's inference rule gives.
 */
import { KilnError, ShapeError } from './errors.ts';
import { type Graph, NAME_RE } from './graph.ts';
import { inferType, typeStr, type ValueType } from './ops.ts';
import { shapeEq } from './shape.ts';

export class VerifyError extends KilnError {
  override name = 'VerifyError';
}

function sameType(a: ValueType, b: ValueType): boolean {
  return a.dtype === b.dtype && shapeEq(a.shape, b.shape);
}

/** Throw a VerifyError describing the first problem found in `g`. */
export function verify(g: Graph): void {
  const fail = (msg: string): never => {
    throw new VerifyError(`graph ${g.name}: ${msg}`);
  };
  const defined = new Map<number, ValueType>();
  const names = new Set<string>();
  for (const i of g.inputs) {
    if (defined.has(i.id)) fail(`value %${i.id} is defined twice`);
    if (!NAME_RE.test(i.name)) fail(`input name '${i.name}' is not a valid identifier`);
    if (names.has(i.name)) fail(`duplicate input name '${i.name}'`);
    names.add(i.name);
    defined.set(i.id, i.type);
  }
  for (const n of g.nodes) {
    if (defined.has(n.id)) fail(`value %${n.id} is defined twice`);
    const ins = n.inputs.map((id) => defined.get(id) ?? fail(`${n.op} (%${n.id}) uses %${id} before it is defined`));
    let t: ValueType;
    try {
      t = inferType(n.op, ins, n.attrs);
    } catch (e) {
      if (e instanceof ShapeError) fail(`%${n.id}: ${e.message}${n.loc ? ` (at ${n.loc})` : ''}`);
      throw e;
    }
    if (!sameType(t, n.type)) fail(`%${n.id} = ${n.op} records type ${typeStr(n.type)} but infers ${typeStr(t)}`);
    defined.set(n.id, n.type);
  }
  const outNames = new Set<string>();
  for (const o of g.outputs) {
    if (!NAME_RE.test(o.name)) fail(`output name '${o.name}' is not a valid identifier`);
    if (outNames.has(o.name)) fail(`duplicate output name '${o.name}'`);
    outNames.add(o.name);
    if (!defined.has(o.id)) fail(`output '${o.name}' names undefined value %${o.id}`);
  }
}
