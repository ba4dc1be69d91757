/**
 * @file What autocast's casts became after fusion: the kernels of a program whose only work is a
 * cast (a loop kernel of lets and stores whose values are loads and casts, nothing computed), and a
 * one-line summary per kernel of the dtypes it loads and stores.
 */
import { isFloat } from '../../ir/dtype.ts';
import type { Expr, Kernel, KernelProgram, Stmt } from '../../ir/kernel/types.ts';

/** Does `e` compute anything besides loading and converting (index arithmetic does not count)? */
function computes(e: Expr): boolean {
  switch (e.k) {
    case 'load': case 'const': case 'var': case 'ref': return false;
    case 'cast': return computes(e.a);
    default: return true;
  }
}
function hasFloatCast(e: Expr, from: (x: Expr) => string | undefined): boolean {
  if (e.k !== 'cast') return false;
  const src = from(e.a);
  return (src !== undefined && isFloat(src as never) && isFloat(e.dtype) && src !== e.dtype) || hasFloatCast(e.a, from);
}

/** Loop kernels that only load, cast between float dtypes and store. */
export function standaloneCastKernels(p: KernelProgram): Kernel[] {
  return p.kernels.filter((k) => {
    if (k.kind !== 'loop') return false;
    const top = k.body;
    if (!top.every((s) => s.k === 'let' || s.k === 'store')) return false;
    const lets = new Map<string, Expr>();
    const typeOf = (x: Expr): string | undefined => (x.k === 'ref' && lets.has(x.name) ? typeOf(lets.get(x.name)!) ?? x.dtype : x.dtype);
    let cast = false;
    for (const s of top as Array<Extract<Stmt, { k: 'let' | 'store' }>>) {
      const v = s.value;
      if (computes(v)) return false;
      if (hasFloatCast(v, typeOf)) cast = true;
      if (s.k === 'let') lets.set(s.name, v);
    }
    return cast;
  });
}

/** `name: loads f32 b3, bf16 b7 → stores bf16 b9` for each kernel (input/output buffers by name). */
export function kernelIO(p: KernelProgram): string[] {
  const name = (b: number) => {
    const d = p.buffers[b]!;
    return `${d.dtype} ${d.name ?? `b${b}`}`;
  };
  return p.kernels.map((k) => {
    const loads = new Set<number>(), stores = new Set<number>();
    const visitE = (e: Expr): void => {
      switch (e.k) {
        case 'load': loads.add(e.buf); visitE(e.index); break;
        case 'un': case 'cast': visitE(e.a); break;
        case 'bin': visitE(e.a); visitE(e.b); break;
        case 'select': visitE(e.c); visitE(e.a); visitE(e.b); break;
        case 'random': visitE(e.s0); visitE(e.s1); visitE(e.index); break;
        default: break;
      }
    };
    const visitS = (ss: readonly Stmt[]): void => {
      for (const s of ss) {
        if (s.k === 'let') visitE(s.value);
        else if (s.k === 'store') { stores.add(s.buf); visitE(s.value); visitE(s.index); }
        else if (s.k === 'loop') visitS(s.body);
        else { visitS(s.body); visitE(s.value); }
      }
    };
    if (k.kind === 'loop') visitS(k.body);
    else if (k.kind === 'matmul') { visitE(k.a); visitE(k.b); visitS(k.epilogue); }
    else {
      for (const e of [k.q, k.key, k.v]) visitE(e);
      if (k.kind === 'attention') stores.add(k.out.buf);
      else {
        visitE(k.o); visitE(k.dout);
        for (const t of [k.dQ, k.dK, k.dV]) if (t) stores.add(t.buf);
      }
    }
    const ls = [...loads].filter((b) => p.buffers[b]!.kind !== 'const').sort((a, b) => a - b).map(name);
    return `${k.name} (${k.kind}): loads ${ls.join(', ') || '-'} → stores ${[...stores].sort((a, b) => a - b).map(name).join(', ') || '-'}`;
  });
}
