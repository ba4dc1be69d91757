/**
 * @file Stage layout: temporaries re-laid out so that the matmuls read them as plain strided matrices.
 *
 * A matmul operand that reads a temporary through a permuting view — attention's output [B, H, N, hd]
 * read as [B, N, H·hd] by the output projection and its weight gradient, the attention gradients
 * [3, B, H, N, hd] read as [B, N, 3·H·hd] by the qkv projection's backward — is no strided matrix: a
 * library GEMM stages it (one more pass over the activation, backends/cuda/gemmLibrary.ts stageOperand),
 * a generated one loads it element by element. Such a view is a permutation of mixed-radix digits of
 * the buffer's index: index = Σ coef_d · digit_d(vars), with the digits (v, v / c, v % c, (v / c) % r of
 * the view's variables) a mixed radix covering the whole buffer. Storing the buffer in the order the
 * matmul reads it is then a bijection φ of the buffer's index space, and rewriting every access of the
 * buffer — stores and loads, in every kernel — x → φ(x) computes exactly the same values (each
 * element lands and is read at φ of its old address), while the matmul's operand becomes
 * φ(view) = the plain row-major [batch.., rows, k] (or [batch.., k, rows]) index.
 *
 * Only temporaries (nothing outside the program sees their layout). A buffer takes the φ of one of its
 * requests when that makes more matmul operands plain, and no access of the buffer that was affine
 * (a strided load or store) stops being affine. The rewritten indices are simplified with each
 * kernel's variable extents (ir/kernel/expr.ts simplifyIndex), which collapses φ of the producer's
 * affine store ([b, h, s, d] → the new [b, s, h, d] strides) back to an affine form.
 */
import { I, affine, bounds, exprKey, iadd, idiv, imod, imul, mapExpr, simplifyIndex, walkExpr } from '../../ir/kernel/expr.ts';
import type { Extents } from '../../ir/kernel/expr.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { BufferDecl, Expr, Kernel, MatmulKernel, Stmt } from '../../ir/kernel/types.ts';

/** One digit of a view's index: coef · (var / w % r) (w = 1: no division; w·r = the var's extent: no mod). */
interface Digit {
  readonly coef: number;
  readonly v: string;
  readonly w: number;
  readonly r: number;
}

/** A re-layout of one buffer: new index = φ(old index). */
export interface Relayout {
  readonly buf: number;
  readonly phi: (x: Expr) => Expr;
}

/** The digits of `e` (a simplified index over vars of extents `ext`) when it is a mixed radix covering `numel`. */
export function viewDigits(e: Expr, ext: Extents, numel: number): Digit[] | undefined {
  const digits: Digit[] = [];
  const atom = (x: Expr, coef: number): boolean => {
    const of = (y: Expr, w: number, r?: number): boolean => {
      if (y.k !== 'var') return false;
      const n = ext.get(y.name);
      if (n === undefined || n % w !== 0) return false;
      const rr = r ?? n / w;
      if ((n / w) % rr !== 0) return false;
      digits.push({ coef, v: y.name, w, r: rr });
      return true;
    };
    if (x.k === 'var') return of(x, 1);
    if (x.k !== 'bin' || x.b.k !== 'const') return false;
    if (x.op === 'div') return of(x.a, x.b.v);
    if (x.op === 'mod') {
      if (x.a.k === 'bin' && x.a.op === 'div' && x.a.b.k === 'const') return of(x.a.a, x.a.b.v, x.b.v);
      return of(x.a, 1, x.b.v);
    }
    return false;
  };
  const walk = (x: Expr, coef: number): boolean => {
    if (x.k === 'bin' && x.op === 'add') return walk(x.a, coef) && walk(x.b, coef);
    if (x.k === 'bin' && x.op === 'mul' && x.b.k === 'const') return walk(x.a, coef * x.b.v);
    if (x.k === 'bin' && x.op === 'mul' && x.a.k === 'const') return walk(x.b, coef * x.a.v);
    if (x.k === 'const') return x.v === 0;
    return atom(x, coef);
  };
  if (e.dtype !== 'i32' || !walk(e, 1)) return undefined;
  // The digits, by coefficient, must be a mixed radix over the whole buffer ...
  const byCoef = digits.filter((d) => d.r > 1).sort((a, b) => a.coef - b.coef);
  let c = 1;
  for (const d of byCoef) {
    if (d.coef !== c) return undefined;
    c *= d.r;
  }
  if (c !== numel) return undefined;
  // ... and each variable's digits a mixed radix over its extent (every var read whole, once).
  const vars = new Set(byCoef.map((d) => d.v));
  for (const v of vars) {
    let w = 1;
    for (const d of byCoef.filter((x) => x.v === v).sort((a, b) => a.w - b.w)) {
      if (d.w !== w) return undefined;
      w *= d.r;
    }
    if (w !== ext.get(v)) return undefined;
  }
  return byCoef;
}

/**
 * φ for a view with digits `digits` that should read as the row-major index over `order` (vars,
 * outermost first, extents `ext`): φ(x) = Σ_v stride_v · Σ_{digits of v} w · ((x / coef) % r).
 */
function phiOf(digits: readonly Digit[], order: readonly string[], ext: Extents, numel: number): (x: Expr) => Expr {
  const stride = new Map<string, number>();
  let s = 1;
  for (let i = order.length - 1; i >= 0; i--) {
    stride.set(order[i]!, s);
    s *= ext.get(order[i]!)!;
  }
  return (x) => {
    let e: Expr = I.c(0);
    for (const d of digits) {
      const q = idiv(x, d.coef);
      const digit = d.coef * d.r === numel ? q : imod(q, d.r);
      e = iadd(e, imul(digit, I.c(stride.get(d.v)! * d.w)));
    }
    return e;
  };
}

/**
 * Merge the digits φ leaves split: K·((x / c) % r) + K·r·(x / (c·r)) → K·(x / c) (x / 1 = x), until
 * none is left — what makes φ(view) the plain index (the simplifier's own recombine pairs x / c with
 * x % c only). Exact for x ≥ 0 (index expressions are).
 */
export function mergeDigits(e: Expr): Expr {
  const terms: Array<{ coef: number; atom: Expr }> = [];
  let c = 0;
  const walk = (x: Expr, k: number) => {
    if (x.k === 'bin' && x.op === 'add') (walk(x.a, k), walk(x.b, k));
    else if (x.k === 'bin' && x.op === 'mul' && x.b.k === 'const') walk(x.a, k * x.b.v);
    else if (x.k === 'bin' && x.op === 'mul' && x.a.k === 'const') walk(x.b, k * x.a.v);
    else if (x.k === 'const') c += k * x.v;
    else terms.push({ coef: k, atom: x });
  };
  if (e.dtype !== 'i32') return e;
  walk(e, 1);
  // (x, c, r) of a digit (x / c) % r (c = 1: x % r), and (x, c) of a quotient x / c.
  const digit = (a: Expr) => (a.k === 'bin' && a.op === 'mod' && a.b.k === 'const'
    ? a.a.k === 'bin' && a.a.op === 'div' && a.a.b.k === 'const' ? { x: a.a.a, c: a.a.b.v, r: a.b.v } : { x: a.a, c: 1, r: a.b.v }
    : undefined);
  const quotient = (a: Expr) => (a.k === 'bin' && a.op === 'div' && a.b.k === 'const' ? { x: a.a, c: a.b.v } : undefined);
  for (let merged = true; merged;) {
    merged = false;
    for (let i = 0; i < terms.length && !merged; i++) {
      const d = digit(terms[i]!.atom);
      if (!d) continue;
      const key = exprKey(d.x);
      const j = terms.findIndex((t) => { const q = quotient(t.atom); return q !== undefined && q.c === d.c * d.r && t.coef === terms[i]!.coef * d.r && exprKey(q.x) === key; });
      if (j < 0) continue;
      terms[i] = { coef: terms[i]!.coef, atom: idiv(d.x, d.c) };
      terms.splice(j, 1);
      merged = true;
    }
  }
  return terms.reduce((acc, t) => iadd(acc, imul(t.atom, I.c(t.coef))), I.c(c));
}

/** The variable extents of a matmul kernel's expressions. */
function matmulExtents(k: MatmulKernel): Extents {
  return new Map([...k.batch.map((n, d) => [`b${d}`, n] as const), ['i', k.m], ['j', k.n], ['p', k.k]]);
}

/** The operand as a load of a buffer, under casts only. */
function operandLoad(e: Expr): Extract<Expr, { k: 'load' }> | undefined {
  while (e.k === 'cast') e = e.a;
  return e.k === 'load' ? e : undefined;
}

/**
 * The re-layout that makes operand `which` of `k` a plain row-major matrix, when it reads a
 * temporary through a digit-permuting view: [batch.., rows, K] where the view's fastest digit is
 * along K, else [batch.., K, rows] (the producer's fastest axis stays fastest).
 */
function request(k: MatmulKernel, which: 'a' | 'b', buffers: readonly BufferDecl[]): Relayout | undefined {
  const ld = operandLoad(which === 'a' ? k.a : k.b);
  if (!ld || buffers[ld.buf]!.kind !== 'temp' || affine(ld.index)) return undefined;
  const ext = matmulExtents(k);
  const numel = buffers[ld.buf]!.numel;
  const digits = viewDigits(simplifyIndex(ld.index, ext), ext, numel);
  if (!digits) return undefined;
  const rows = which === 'a' ? 'i' : 'j';
  const batch = k.batch.map((_, d) => `b${d}`).filter((v) => digits.some((x) => x.v === v));
  const fastest = digits[0]!.v;
  const inner = fastest === 'p' ? [rows, 'p'] : [`p`, rows];
  return { buf: ld.buf, phi: phiOf(digits, [...batch, ...inner], ext, numel) };
}

/** Every access (load or store index) of `buf` in `k`, with the extents of its variables. */
function accesses(k: Kernel, buf: number): Array<{ index: Expr; ext: Extents; operand?: boolean }> {
  const out: Array<{ index: Expr; ext: Extents; operand?: boolean }> = [];
  const inExpr = (e: Expr, ext: Extents) => walkExpr(e, (x) => { if (x.k === 'load' && x.buf === buf) out.push({ index: x.index, ext }); });
  const inStmts = (ss: readonly Stmt[], ext: Extents) => {
    for (const s of ss) {
      if (s.k === 'let') inExpr(s.value, ext);
      else if (s.k === 'store') {
        if (s.buf === buf) out.push({ index: s.index, ext });
        inExpr(s.index, ext);
        inExpr(s.value, ext);
      } else {
        const inner = new Map(ext).set(s.var, s.extent);
        inStmts(s.body, inner);
        if (s.k === 'reduce') inExpr(s.value, inner);
      }
    }
  };
  switch (k.kind) {
    case 'loop': inStmts(k.body, new Map(k.grid.map((n, d) => [`g${d}`, n]))); break;
    case 'matmul': {
      const ext = matmulExtents(k);
      for (const e of [k.a, k.b]) {
        const ld = operandLoad(e);
        if (ld && ld.buf === buf && out.push({ index: ld.index, ext, operand: true })) walkExpr(ld.index, (x) => { if (x.k === 'load' && x.buf === buf) out.push({ index: x.index, ext }); });
        else inExpr(e, ext);
      }
      inStmts(k.epilogue, ext);
      break;
    }
    case 'attention': case 'attention_grad': {
      const ext = attentionExtents(k);
      for (const e of [k.q, k.key, k.v, ...(k.kind === 'attention_grad' ? [k.o, k.dout] : [])]) inExpr(e, ext);
      const outs = k.kind === 'attention' ? [k.out] : [k.dQ, k.dK, k.dV];
      for (const o of outs) if (o) { if (o.buf === buf) out.push({ index: o.index, ext }); inExpr(o.index, ext); }
      break;
    }
  }
  return out;
}

function attentionExtents(k: Extract<Kernel, { kind: 'attention' | 'attention_grad' }>): Extents {
  return new Map([...k.batch.map((n, d) => [`b${d}`, n] as const), ['s', k.sq], ['t', k.sk], ['d', k.dk], ['e', k.dv]]);
}

/** `k` with every access of `r.buf` re-indexed x → φ(x), simplified with its variables' extents. */
export function relayoutKernel(k: Kernel, r: Relayout): Kernel {
  const re = (index: Expr, ext: Extents) => simplifyIndex(mergeDigits(simplifyIndex(r.phi(index), ext)), ext);
  const inExpr = (e: Expr, ext: Extents): Expr => mapExpr(e, (x) => (x.k === 'load' && x.buf === r.buf ? { ...x, index: re(inExpr(x.index, ext), ext) } : undefined));
  const inStmts = (ss: readonly Stmt[], ext: Extents): Stmt[] => ss.map((s): Stmt => {
    switch (s.k) {
      case 'let': return { ...s, value: inExpr(s.value, ext) };
      case 'store': {
        const index = inExpr(s.index, ext);
        return { ...s, index: s.buf === r.buf ? re(index, ext) : index, value: inExpr(s.value, ext) };
      }
      case 'loop': return { ...s, body: inStmts(s.body, new Map(ext).set(s.var, s.extent)) };
      case 'reduce': {
        const inner = new Map(ext).set(s.var, s.extent);
        return { ...s, body: inStmts(s.body, inner), value: inExpr(s.value, inner) };
      }
    }
  });
  switch (k.kind) {
    case 'loop': return { ...k, body: inStmts(k.body, new Map(k.grid.map((n, d) => [`g${d}`, n]))) };
    case 'matmul': {
      const ext = matmulExtents(k);
      return { ...k, a: inExpr(k.a, ext), b: inExpr(k.b, ext), epilogue: inStmts(k.epilogue, ext) };
    }
    case 'attention': {
      const ext = attentionExtents(k);
      const o = k.out;
      return { ...k, q: inExpr(k.q, ext), key: inExpr(k.key, ext), v: inExpr(k.v, ext), out: { ...o, index: o.buf === r.buf ? re(inExpr(o.index, ext), ext) : inExpr(o.index, ext) } };
    }
    case 'attention_grad': {
      const ext = attentionExtents(k);
      const st = (o: typeof k.dQ) => o && { ...o, index: o.buf === r.buf ? re(inExpr(o.index, ext), ext) : inExpr(o.index, ext) };
      return { ...k, q: inExpr(k.q, ext), key: inExpr(k.key, ext), v: inExpr(k.v, ext), o: inExpr(k.o, ext), dout: inExpr(k.dout, ext), dQ: st(k.dQ), dK: st(k.dK), dV: st(k.dV) };
    }
  }
}

/** How a buffer's accesses read: matmul operands that are plain (affine), and accesses that are affine. */
function score(kernels: readonly Kernel[], buf: number): { plainOperands: number; affine: Set<string> } {
  let plainOperands = 0;
  const aff = new Set<string>();
  kernels.forEach((k, i) => accesses(k, buf).forEach((a, j) => {
    if (!affine(a.index)) return;
    if (a.operand) plainOperands++;
    aff.add(`${i}:${j}`);
  }));
  return { plainOperands, affine: aff };
}

/** Does `e`'s simplified form keep only non-negative indices below `numel` over its extents (a sanity bound)? */
function inRange(e: Expr, ext: Extents, numel: number): boolean {
  const b = bounds(e, ext);
  return b === undefined || (b[0] >= 0 && b[1] < numel);
}

/**
 * The layout stage: each temporary that a matmul reads through a digit-permuting view, re-laid out as
 * that matmul reads it, when that makes more of its matmul operands plain and keeps every affine
 * access affine. Returns the kernels and the re-layouts applied (in order).
 */
export function relayoutForMatmuls(kernels: readonly Kernel[], buffers: readonly BufferDecl[]): { kernels: Kernel[]; applied: number[] } {
  let ks = [...kernels];
  const applied: number[] = [];
  const candidates = new Map<number, Relayout[]>();
  for (const k of ks) {
    if (k.kind !== 'matmul') continue;
    for (const which of ['a', 'b'] as const) {
      const r = request(k, which, buffers);
      if (r) candidates.set(r.buf, [...(candidates.get(r.buf) ?? []), r]);
    }
  }
  // The kernels that touch each candidate (kernelAccess: cheaper than walking every expression).
  const touching = new Map<number, number[]>();
  ks.forEach((k, i) => {
    const a = kernelAccess(k);
    for (const b of new Set([...a.reads, ...a.writes])) if (candidates.has(b)) touching.set(b, [...(touching.get(b) ?? []), i]);
  });
  for (const [buf, rs] of candidates) {
    const users = (touching.get(buf) ?? []).map((i) => [ks[i]!, i] as const);
    const before = score(users.map(([k]) => k), buf);
    let best: { kernels: Kernel[]; plain: number } | undefined;
    for (const r of rs) {
      const moved = users.map(([k]) => relayoutKernel(k, r));
      const after = score(moved, buf);
      const numel = buffers[buf]!.numel;
      const sane = moved.every((k) => accesses(k, buf).every((a) => inRange(a.index, a.ext, numel)));
      if (!sane || after.plainOperands <= before.plainOperands || [...before.affine].some((x) => !after.affine.has(x))) continue;
      if (!best || after.plainOperands > best.plain) best = { kernels: moved, plain: after.plainOperands };
    }
    if (!best) continue;
    ks = ks.slice();
    users.forEach(([, i], j) => (ks[i] = best!.kernels[j]!));
    applied.push(buf);
  }
  return { kernels: ks, applied };
}
