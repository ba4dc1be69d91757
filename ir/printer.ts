/**
 * @file The Graph IR's text form (printer). One line per input, node and output:
 *
 *   graph mlp {
 *     data %x : f32[8,784]
 *     param %fc1.weight : f32[128,784]
 *     %0 : f32[784,128] = permute %fc1.weight {perm=[1,0]}
 *     %1 : f32[8,128] = matmul %x, %0 loc("models/mlp.ts:12:7")
 *     output logits = %1
 *   }
 *
 * Inputs are referred to by name, nodes by a number assigned in order from 0, so printing is
 * canonical and print(parse(print(g))) === print(g). Attributes print in the op's schema order;
 * numbers print in the shortest form that reads back exactly (inf, -inf, nan, -0 spelled out).
 * Source locations print only when asked ({ locs: true }).
 */
import type { Graph } from './graph.ts';
import { type AttrValue, opSpec, type ValueType } from './ops.ts';

export interface PrintOptions {
  /** Print each node's model source location as loc("file:line:col"). */
  locs?: boolean;
}

export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  if (Object.is(v, -0)) return '-0';
  return String(v);
}

function formatAttr(v: AttrValue): string {
  if (Array.isArray(v)) return `[${(v as number[]).map(formatNumber).join(',')}]`;
  if (typeof v === 'number') return formatNumber(v);
  return String(v);
}

export function formatType(t: ValueType): string {
  return `${t.dtype}[${t.shape.join(',')}]`;
}

export function printGraph(g: Graph, opts: PrintOptions = {}): string {
  const names = new Map<number, string>();
  const lines: string[] = [`graph ${g.name} {`];
  for (const i of g.inputs) {
    names.set(i.id, `%${i.name}`);
    lines.push(`  ${i.kind} %${i.name} : ${formatType(i.type)}`);
  }
  let counter = 0;
  for (const n of g.nodes) {
    const name = `%${counter++}`;
    const args = n.inputs.map((id) => names.get(id) ?? `%?${id}`).join(', ');
    const spec = opSpec(n.op);
    const attrs = spec.attrs.length ? ` {${spec.attrs.map(([k]) => `${k}=${formatAttr(n.attrs[k]!)}`).join(', ')}}` : '';
    const loc = opts.locs && n.loc ? ` loc(${JSON.stringify(n.loc)})` : '';
    lines.push(`  ${name} : ${formatType(n.type)} = ${n.op}${args ? ' ' + args : ''}${attrs}${loc}`);
    names.set(n.id, name);
  }
  for (const o of g.outputs) lines.push(`  output ${o.name} = ${names.get(o.id) ?? `%?${o.id}`}`);
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** A key that identifies attribute values exactly (unlike JSON, it keeps −0, inf, −inf and nan apart). */
export function attrsKey(attrs: Readonly<Record<string, AttrValue>>): string {
  return Object.keys(attrs).sort().map((k) => `${k}=${formatAttr(attrs[k]!)}`).join(';');
}
