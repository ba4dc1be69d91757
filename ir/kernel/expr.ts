/**
 * @file Building, inspecting and simplifying kernel-IR expressions. Index expressions (i32 trees over
 * loop variables with known extents) are normalized to linear forms so that the div/mod chains that
 * folded views produce collapse: e.g. ((i·12 + j·4 + k) / 4) % 3 → j when k < 4 and j < 3.
 */
import type { DType } from '../dtype.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../ops.ts';
import type { Expr, Stmt } from './types.ts';

export const I = {
  c: (v: number): Expr => ({ k: 'const', v, dtype: 'i32' }),
  v: (name: string): Expr => ({ k: 'var', name, dtype: 'i32' }),
};

export function konst(v: number, dtype: DType): Expr {
  return { k: 'const', v, dtype };
}
export function ref(name: string, dtype: DType): Expr {
  return { k: 'ref', name, dtype };
}
export function load(buf: number, index: Expr, dtype: DType): Expr {
  return { k: 'load', buf, index, dtype };
}
export function un(op: UnaryOp, a: Expr): Expr {
  return { k: 'un', op, a, dtype: a.dtype };
}
export function bin(op: BinaryOp | CompareOp | LogicalOp, a: Expr, b: Expr): Expr {
  const cmp = op === 'eq' || op === 'ne' || op === 'lt' || op === 'le' || op === 'gt' || op === 'ge' || op === 'and' || op === 'or' || op === 'xor';
  return { k: 'bin', op, a, b, dtype: cmp ? 'bool' : a.dtype };
}
export function select(c: Expr, a: Expr, b: Expr): Expr {
  return { k: 'select', c, a, b, dtype: a.dtype };
}
export function cast(a: Expr, dtype: DType): Expr {
  return a.dtype === dtype ? a : { k: 'cast', a, dtype };
}

// ---- integer index arithmetic with constant folding ----
export function iadd(a: Expr, b: Expr): Expr {
  if (a.k === 'const' && b.k === 'const') return I.c(a.v + b.v);
  if (a.k === 'const' && a.v === 0) return b;
  if (b.k === 'const' && b.v === 0) return a;
  return bin('add', a, b);
}
export function isub(a: Expr, b: Expr): Expr {
  if (b.k === 'const') return iadd(a, I.c(-b.v));
  return bin('sub', a, b);
}
export function imul(a: Expr, b: Expr): Expr {
  if (a.k === 'const' && b.k === 'const') return I.c(a.v * b.v);
  if ((a.k === 'const' && a.v === 0) || (b.k === 'const' && b.v === 0)) return I.c(0);
  if (a.k === 'const' && a.v === 1) return b;
  if (b.k === 'const' && b.v === 1) return a;
  return bin('mul', a, b);
}
export function idiv(a: Expr, d: number): Expr {
  if (d === 1) return a;
  if (a.k === 'const') return I.c(Math.trunc(a.v / d));
  return bin('div', a, I.c(d));
}
export function imod(a: Expr, d: number): Expr {
  if (d === 1) return I.c(0);
  if (a.k === 'const') return I.c(a.v % d);
  return bin('mod', a, I.c(d));
}

/** Σ idx[i]·strides[i] (row-major linearization when strides are row-major). */
export function linearIndex(idx: readonly Expr[], strides: readonly number[]): Expr {
  let e: Expr = I.c(0);
  idx.forEach((x, i) => (e = iadd(e, imul(x, I.c(strides[i]!)))));
  return e;
}

// ---- symbolic simplification of index expressions ----

/** Inclusive integer bounds, or undefined when unknown. */
export type Bounds = readonly [number, number] | undefined;
export type Extents = ReadonlyMap<string, number>;

/**
 * Results already computed for one extents map: simplified forms (of whole index expressions and of
 * atoms), bounds and keys, per expression object. Expressions are immutable DAGs: a view's index map reuses
 * its operand index expressions in every axis of its result (reshape puts the whole linearized index
 * into each axis' div/mod), and the simplifier itself re-simplifies operands it has already seen
 * (toLinear then simplifyIndex of the same operand, recombine, the recursive div/mod splits). Without
 * the memos each shared subtree was simplified once per path to it, exponential in the depth of
 * div/mod nesting: rank-7/8 reshape/pad/slice chains took 2-10 s per kernel instead of ~20 ms. The
 * memos only cache a pure function, so results are unchanged. An extents map only ever grows
 * (KernelBuilder.defineVar never changes a defined extent), so they are dropped when its size changes.
 */
interface Memo {
  size: number;
  index: Map<Expr, Expr>;
  atom: Map<Expr, Expr>;
  bounds: Map<Expr, Bounds>;
  keys: Map<Expr, string>;
}
const memos = new WeakMap<Extents, Memo>();
function memoOf(ext: Extents): Memo {
  let m = memos.get(ext);
  if (!m || m.size !== ext.size) {
    m = { size: ext.size, index: new Map(), atom: new Map(), bounds: new Map(), keys: new Map() };
    memos.set(ext, m);
  }
  return m;
}

export function bounds(e: Expr, ext: Extents): Bounds {
  if (e.k === 'const') return [e.v, e.v];
  const memo = memoOf(ext).bounds;
  if (memo.has(e)) return memo.get(e);
  const b = computeBounds(e, ext);
  memo.set(e, b);
  return b;
}

function computeBounds(e: Expr, ext: Extents): Bounds {
  switch (e.k) {
    case 'const':
      return [e.v, e.v];
    case 'var': {
      const n = ext.get(e.name);
      return n === undefined ? undefined : [0, n - 1];
    }
    case 'bin': {
      const a = bounds(e.a, ext), b = bounds(e.b, ext);
      if (!a || !b) return undefined;
      switch (e.op) {
        case 'add': return [a[0] + b[0], a[1] + b[1]];
        case 'sub': return [a[0] - b[1], a[1] - b[0]];
        case 'mul': {
          const p = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]];
          return [Math.min(...p), Math.max(...p)];
        }
        case 'div':
          if (b[0] === b[1] && b[0] > 0 && a[0] >= 0) return [Math.trunc(a[0] / b[0]), Math.trunc(a[1] / b[0])];
          return undefined;
        case 'mod':
          if (b[0] === b[1] && b[0] > 0 && a[0] >= 0) return a[1] < b[0] ? a : [0, b[0] - 1];
          return undefined;
        case 'max': return [Math.max(a[0], b[0]), Math.max(a[1], b[1])];
        case 'min': return [Math.min(a[0], b[0]), Math.min(a[1], b[1])];
        default: return undefined;
      }
    }
    case 'select': {
      const a = bounds(e.a, ext), b = bounds(e.b, ext);
      return a && b ? [Math.min(a[0], b[0]), Math.max(a[1], b[1])] : undefined;
    }
    default:
      return undefined;
  }
}

/** A linear form Σ coef·atom + c over non-linear atoms (vars, div, mod, loads, ...). */
interface Linear {
  terms: Map<string, { atom: Expr; coef: number }>;
  c: number;
}

export function exprKey(e: Expr): string {
  return keyWith(e, (x) => exprKey(x));
}
/** exprKey with `sub` giving the keys of sub-expressions. */
function keyWith(e: Expr, sub: (x: Expr) => string): string {
  switch (e.k) {
    case 'const': return `${e.v}:${e.dtype}`;
    case 'var': return e.name;
    case 'ref': return `%${e.name}`;
    case 'load': return `L${e.buf}[${sub(e.index)}]`;
    case 'un': return `${e.op}(${sub(e.a)})`;
    case 'bin': return `${e.op}(${sub(e.a)},${sub(e.b)}):${e.dtype}`;
    case 'select': return `sel(${sub(e.c)},${sub(e.a)},${sub(e.b)})`;
    case 'cast': return `${e.dtype}(${sub(e.a)})`;
    case 'random': return `rnd${e.dist}(${sub(e.s0)},${sub(e.s1)},${e.stream},${sub(e.index)})`;
  }
}
/** exprKey, memoized with the simplifier's other results (the atoms of linear forms are keyed by it). */
function keyOf(e: Expr, ext: Extents): string {
  if (e.k === 'const' || e.k === 'var' || e.k === 'ref') return keyWith(e, exprKey);
  const memo = memoOf(ext).keys;
  let k = memo.get(e);
  if (k === undefined) {
    k = keyWith(e, (x) => keyOf(x, ext));
    memo.set(e, k);
  }
  return k;
}

function toLinear(e: Expr, ext: Extents): Linear {
  if (e.k === 'const') return { terms: new Map(), c: e.v };
  if (e.k === 'bin' && e.dtype === 'i32') {
    if (e.op === 'add' || e.op === 'sub') {
      const a = toLinear(e.a, ext), b = toLinear(e.b, ext);
      const s = e.op === 'add' ? 1 : -1;
      for (const [key, t] of b.terms) addTerm(a, key, t.atom, s * t.coef);
      a.c += s * b.c;
      return a;
    }
    if (e.op === 'mul') {
      const a = toLinear(e.a, ext), b = toLinear(e.b, ext);
      if (b.terms.size === 0) return scale(a, b.c);
      if (a.terms.size === 0) return scale(b, a.c);
    }
  }
  const s = simplifyAtom(e, ext);
  if (s.k === 'const') return { terms: new Map(), c: s.v };
  if (s !== e && s.k === 'bin' && (s.op === 'add' || s.op === 'sub' || s.op === 'mul')) return toLinear(s, ext);
  const l: Linear = { terms: new Map(), c: 0 };
  addTerm(l, keyOf(s, ext), s, 1);
  return l;
}
function addTerm(l: Linear, key: string, atom: Expr, coef: number): void {
  const t = l.terms.get(key);
  const c = (t?.coef ?? 0) + coef;
  if (c === 0) l.terms.delete(key);
  else l.terms.set(key, { atom, coef: c });
}
function scale(l: Linear, k: number): Linear {
  if (k === 0) return { terms: new Map(), c: 0 };
  for (const t of l.terms.values()) t.coef *= k;
  l.c *= k;
  return l;
}
/** k·c·(x / c) + k·(x % c) → k·x (for x >= 0): undo the split that reshapes introduce. */
function recombine(l: Linear, ext: Extents): void {
  for (const [key, t] of [...l.terms]) {
    const a = t.atom;
    if (a.k !== 'bin' || a.op !== 'div' || a.b.k !== 'const') continue;
    const c = a.b.v;
    const modKey = keyOf(bin('mod', a.a, a.b), ext);
    const m = l.terms.get(modKey);
    if (!m || t.coef !== c * m.coef || !l.terms.has(key)) continue;
    const xb = bounds(a.a, ext);
    if (!xb || xb[0] < 0) continue;
    l.terms.delete(key);
    l.terms.delete(modKey);
    const inner = toLinear(a.a, ext);
    for (const [k2, t2] of inner.terms) addTerm(l, k2, t2.atom, t2.coef * m.coef);
    l.c += inner.c * m.coef;
  }
}

function fromLinear(l: Linear): Expr {
  // Deterministic order: by key, so equal forms print equally.
  let e: Expr = I.c(0);
  const terms = [...l.terms.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [, t] of terms) e = iadd(e, imul(t.atom, I.c(t.coef)));
  return iadd(e, I.c(l.c));
}
function linearBounds(l: Linear, ext: Extents): Bounds {
  let lo = l.c, hi = l.c;
  for (const t of l.terms.values()) {
    const b = bounds(t.atom, ext);
    if (!b) return undefined;
    const [p, q] = [b[0] * t.coef, b[1] * t.coef];
    lo += Math.min(p, q);
    hi += Math.max(p, q);
  }
  return [lo, hi];
}

function simplifyAtom(e: Expr, ext: Extents): Expr {
  const memo = memoOf(ext).atom;
  let r = memo.get(e);
  if (r === undefined) {
    r = computeAtom(e, ext);
    memo.set(e, r);
  }
  return r;
}

function computeAtom(e: Expr, ext: Extents): Expr {
  if (e.k === 'select') {
    const c = simplifyIndex(e.c, ext);
    if (c.k === 'const') return simplifyIndex(c.v ? e.a : e.b, ext);
    return select(c, simplifyIndex(e.a, ext), simplifyIndex(e.b, ext));
  }
  if (e.k !== 'bin' || e.dtype !== 'i32' || (e.op !== 'div' && e.op !== 'mod') || e.b.k !== 'const') {
    if (e.k === 'bin' && e.dtype === 'i32' && (e.op === 'max' || e.op === 'min')) {
      const a = simplifyIndex(e.a, ext), b = simplifyIndex(e.b, ext);
      const ba = bounds(a, ext), bb = bounds(b, ext);
      if (ba && bb) {
        if (e.op === 'max' ? ba[0] >= bb[1] : ba[1] <= bb[0]) return a;
        if (e.op === 'max' ? bb[0] >= ba[1] : bb[1] <= ba[0]) return b;
      }
      return bin(e.op, a, b);
    }
    return e;
  }
  const d = e.b.v;
  const inner = e.a.k === 'bin' && e.a.op === 'div' && e.a.b.k === 'const' && e.op === 'div' ? e.a : undefined;
  if (inner && inner.b.k === 'const') {
    // (x / a) / d = x / (a·d) for x >= 0
    const xb = bounds(inner.a, ext);
    if (xb && xb[0] >= 0) return simplifyAtom(bin('div', inner.a, I.c(inner.b.v * d)), ext);
  }
  if (d === 1) return e.op === 'div' ? simplifyIndex(e.a, ext) : I.c(0);
  const l = toLinear(e.a, ext);
  const lb = linearBounds(l, ext);
  if (!lb || lb[0] < 0 || d <= 0) return bin(e.op, simplifyIndex(e.a, ext), e.b);
  if (lb[1] < d) return e.op === 'div' ? I.c(0) : fromLinear(l);
  // Find c dividing d such that L = c·X + R with X >= 0 and 0 <= R < c. Then
  //   L / d = X / (d/c)   and   L % d = (X % (d/c))·c + R.
  // c = d is the plain case (terms divisible by d drop out of the remainder).
  const cands = new Set<number>([d]);
  for (const t of l.terms.values()) cands.add(gcd(Math.abs(t.coef), d));
  for (const c of [...cands].filter((x) => x > 1).sort((x, y) => y - x)) {
    const { q: X, r: R } = splitMultiple(l, c, ext);
    const rb = linearBounds(R, ext);
    const xb = linearBounds(X, ext);
    if (!rb || !xb || rb[0] < 0 || rb[1] >= c || xb[0] < 0) continue;
    const k = d / c;
    const xE = fromLinear(X);
    if (e.op === 'div') return k === 1 ? xE : simplifyAtom(bin('div', xE, I.c(k)), ext);
    const xm = k === 1 ? I.c(0) : simplifyAtom(bin('mod', xE, I.c(k)), ext);
    return simplifyIndex(iadd(imul(xm, I.c(c)), fromLinear(R)), ext);
  }
  // Otherwise drop the terms divisible by d: (q·d + r) / d = q + r / d and (q·d + r) % d = r % d (r >= 0).
  const { q, r } = splitMultiple(l, d, ext);
  const rb = linearBounds(r, ext);
  if ((q.terms.size === 0 && q.c === 0) || !rb || rb[0] < 0) return bin(e.op, fromLinear(l), e.b);
  const rem = rb[1] < d ? (e.op === 'mod' ? fromLinear(r) : I.c(0)) : bin(e.op, fromLinear(r), e.b);
  return e.op === 'mod' ? rem : iadd(fromLinear(q), rem);
}

/** L = c·q + r: q gathers the non-negative terms whose coefficient c divides (and ⌊const / c⌋); r the rest. */
function splitMultiple(l: Linear, c: number, ext: Extents): { q: Linear; r: Linear } {
  const q: Linear = { terms: new Map(), c: Math.floor(l.c / c) };
  const r: Linear = { terms: new Map(), c: l.c - Math.floor(l.c / c) * c };
  for (const [key, t] of l.terms) {
    const tb = bounds(t.atom, ext);
    if (t.coef % c === 0 && t.coef > 0 && tb && tb[0] >= 0) addTerm(q, key, t.atom, t.coef / c);
    else addTerm(r, key, t.atom, t.coef);
  }
  return { q, r };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Simplify an i32 index expression (or a bool condition over indices) given the extents of its variables. */
export function simplifyIndex(e: Expr, ext: Extents): Expr {
  if (e.dtype !== 'i32' && e.dtype !== 'bool') return e;
  if (e.k === 'const' || e.k === 'var') return e;
  const memo = memoOf(ext).index;
  let r = memo.get(e);
  if (r === undefined) {
    r = e.dtype === 'bool' ? simplifyCondition(e, ext) : computeIndex(e, ext);
    memo.set(e, r);
  }
  return r;
}

function computeIndex(e: Expr, ext: Extents): Expr {
  if (e.k === 'bin' && (e.op === 'max' || e.op === 'min')) return simplifyAtom(e, ext);
  if (e.k === 'bin' && (e.op === 'add' || e.op === 'sub' || e.op === 'mul' || e.op === 'div' || e.op === 'mod')) {
    const l = toLinear(e, ext);
    recombine(l, ext);
    return fromLinear(l);
  }
  if (e.k === 'select') return simplifyAtom(e, ext);
  return e;
}

// ---- traversal ----

/** Visit every sub-expression of `e` (pre-order). */
export function walkExpr(e: Expr, f: (x: Expr) => void): void {
  f(e);
  switch (e.k) {
    case 'load': walkExpr(e.index, f); break;
    case 'un': case 'cast': walkExpr(e.a, f); break;
    case 'bin': walkExpr(e.a, f); walkExpr(e.b, f); break;
    case 'select': walkExpr(e.c, f); walkExpr(e.a, f); walkExpr(e.b, f); break;
    case 'random': walkExpr(e.s0, f); walkExpr(e.s1, f); walkExpr(e.index, f); break;
    default: break;
  }
}

/** Visit every expression held by statements (recursively). */
export function walkStmts(stmts: readonly Stmt[], f: (x: Expr) => void, onStmt?: (s: Stmt) => void): void {
  for (const s of stmts) {
    onStmt?.(s);
    switch (s.k) {
      case 'let': walkExpr(s.value, f); break;
      case 'loop': walkStmts(s.body, f, onStmt); break;
      case 'reduce': walkStmts(s.body, f, onStmt); walkExpr(s.value, f); break;
      case 'store': walkExpr(s.index, f); walkExpr(s.value, f); break;
    }
  }
}

/** Rebuild `e` bottom-up, letting `f` replace any node (return undefined to keep it). */
export function mapExpr(e: Expr, f: (x: Expr) => Expr | undefined): Expr {
  const r = f(e);
  if (r) return r;
  switch (e.k) {
    case 'load': return { ...e, index: mapExpr(e.index, f) };
    case 'un': return { ...e, a: mapExpr(e.a, f) };
    case 'cast': return { ...e, a: mapExpr(e.a, f) };
    case 'bin': return { ...e, a: mapExpr(e.a, f), b: mapExpr(e.b, f) };
    case 'select': return { ...e, c: mapExpr(e.c, f), a: mapExpr(e.a, f), b: mapExpr(e.b, f) };
    case 'random': return { ...e, s0: mapExpr(e.s0, f), s1: mapExpr(e.s1, f), index: mapExpr(e.index, f) };
    default: return e;
  }
}

/** Apply `f` to every expression of `stmts` (and rename bound names with `rename`). */
export function mapStmts(stmts: readonly Stmt[], f: (x: Expr) => Expr | undefined, rename: (n: string) => string = (n) => n): Stmt[] {
  return stmts.map((s): Stmt => {
    switch (s.k) {
      case 'let': return { k: 'let', name: rename(s.name), value: mapExpr(s.value, f) };
      case 'loop': return { ...s, var: rename(s.var), body: mapStmts(s.body, f, rename) };
      case 'reduce': return { ...s, acc: rename(s.acc), var: rename(s.var), body: mapStmts(s.body, f, rename), value: mapExpr(s.value, f) };
      case 'store': return { ...s, index: mapExpr(s.index, f), value: mapExpr(s.value, f) };
    }
  });
}

const TRUE: Expr = { k: 'const', v: 1, dtype: 'bool' };
const FALSE: Expr = { k: 'const', v: 0, dtype: 'bool' };

/** Fold comparisons of index expressions whose outcome their bounds decide, and and/or with constants. */
function simplifyCondition(e: Expr, ext: Extents): Expr {
  if (e.k !== 'bin') return e;
  if (e.op === 'and' || e.op === 'or') {
    const a = simplifyCondition(e.a, ext), b = simplifyCondition(e.b, ext);
    const isC = (x: Expr, v: number) => x.k === 'const' && x.v === v;
    if (e.op === 'and') {
      if (isC(a, 0) || isC(b, 0)) return FALSE;
      if (isC(a, 1)) return b;
      if (isC(b, 1)) return a;
    } else {
      if (isC(a, 1) || isC(b, 1)) return TRUE;
      if (isC(a, 0)) return b;
      if (isC(b, 0)) return a;
    }
    return bin(e.op, a, b);
  }
  if (e.a.dtype !== 'i32' || (e.op !== 'lt' && e.op !== 'le' && e.op !== 'gt' && e.op !== 'ge')) return e;
  const a = simplifyIndex(e.a, ext), b = simplifyIndex(e.b, ext);
  const ba = bounds(a, ext), bb = bounds(b, ext);
  if (ba && bb) {
    const [lo, hi] = [ba[0] - bb[1], ba[1] - bb[0]]; // bounds of a − b
    const decide = (t: boolean, f: boolean) => (t ? TRUE : f ? FALSE : undefined);
    const r = e.op === 'lt' ? decide(hi < 0, lo >= 0) : e.op === 'le' ? decide(hi <= 0, lo > 0) : e.op === 'gt' ? decide(lo > 0, hi <= 0) : decide(lo >= 0, hi < 0);
    if (r) return r;
  }
  return bin(e.op, a, b);
}

/** e as Σ coef·var + c when it is an affine function of loop variables (integer coefficients), else undefined. */
export function affine(e: Expr): { c: number; coef: Map<string, number> } | undefined {
  switch (e.k) {
    case 'const': return e.dtype === 'i32' ? { c: e.v, coef: new Map() } : undefined;
    case 'var': return { c: 0, coef: new Map([[e.name, 1]]) };
    case 'bin': {
      if (e.dtype !== 'i32') return undefined;
      const a = affine(e.a), b = affine(e.b);
      if (!a || !b) return undefined;
      if (e.op === 'add' || e.op === 'sub') {
        const s = e.op === 'add' ? 1 : -1;
        const coef = new Map(a.coef);
        for (const [k, v] of b.coef) coef.set(k, (coef.get(k) ?? 0) + s * v);
        return { c: a.c + s * b.c, coef };
      }
      if (e.op === 'mul') {
        const [k, x] = a.coef.size === 0 ? [a.c, b] : b.coef.size === 0 ? [b.c, a] : [undefined, undefined];
        if (k === undefined || !x) return undefined;
        return { c: x.c * k, coef: new Map([...x.coef].map(([n, v]) => [n, v * k])) };
      }
      return undefined;
    }
    default: return undefined;
  }
}
