/**
 * The index-expression simplifier and bounds analysis of the kernel IR (ir/kernel/expr.ts:
 * simplifyIndex, bounds). Index arithmetic is exact integer arithmetic (i32, truncating div/mod as
 * the kernel interpreter and GPUs compute them), so every check here is exact: simplified
 * expressions must evaluate to the same integer for every assignment of the variables (brute force
 * over all of them), and bounds must contain every value taken.
 */
import { describe, expect, it } from 'vitest';
import { I, bin, bounds, bounds as boundsOf, select, simplifyIndex } from '../../ir/kernel/expr.ts';
import { printExpr } from '../../ir/kernel/print.ts';
import type { Expr } from '../../ir/kernel/types.ts';
import { mulberry32 } from '../../runtime/prng.ts';

const { c, v } = I;
const add = (a: Expr, b: Expr) => bin('add', a, b);
const sub = (a: Expr, b: Expr) => bin('sub', a, b);
const mul = (a: Expr, k: number) => bin('mul', a, c(k));
const div = (a: Expr, k: number) => bin('div', a, c(k));
const mod = (a: Expr, k: number) => bin('mod', a, c(k));
const ext = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));
const [i, j, k] = [v('i'), v('j'), v('k')];

/** Reference evaluation: i32 index arithmetic with truncating division (x / 0 = x % 0 = 0), bools as 0/1. */
function evaluate(e: Expr, env: ReadonlyMap<string, number>): number {
  switch (e.k) {
    case 'const': return e.v;
    case 'var': {
      const x = env.get(e.name);
      if (x === undefined) throw new Error(`unbound ${e.name}`);
      return x;
    }
    case 'select': return evaluate(e.c, env) ? evaluate(e.a, env) : evaluate(e.b, env);
    case 'bin': {
      const a = evaluate(e.a, env), b = evaluate(e.b, env);
      switch (e.op) {
        case 'add': return a + b;
        case 'sub': return a - b;
        case 'mul': return a * b;
        case 'div': return b === 0 ? 0 : Math.trunc(a / b);
        case 'mod': return b === 0 ? 0 : a % b;
        case 'max': return Math.max(a, b);
        case 'min': return Math.min(a, b);
        case 'lt': return +(a < b);
        case 'le': return +(a <= b);
        case 'gt': return +(a > b);
        case 'ge': return +(a >= b);
        case 'and': return +(a !== 0 && b !== 0);
        case 'or': return +(a !== 0 || b !== 0);
        default: throw new Error(`evaluate: ${e.op}`);
      }
    }
    default: throw new Error(`evaluate: ${e.k}`);
  }
}

/** Every assignment of the variables in `extents` (row-major). */
function* assignments(extents: ReadonlyMap<string, number>): Generator<Map<string, number>> {
  const names = [...extents.keys()];
  const env = new Map(names.map((n) => [n, 0]));
  const total = names.reduce((t, n) => t * extents.get(n)!, 1);
  for (let t = 0; t < total; t++) {
    let r = t;
    for (let d = names.length - 1; d >= 0; d--) {
      const n = extents.get(names[d]!)!;
      env.set(names[d]!, r % n);
      r = Math.floor(r / n);
    }
    yield env;
  }
}

/** The first assignment where `a` and `b` differ, or undefined. */
function differs(a: Expr, b: Expr, extents: ReadonlyMap<string, number>): string | undefined {
  for (const env of assignments(extents)) {
    const x = evaluate(a, env), y = evaluate(b, env);
    if (x !== y) return `${printExpr(a)} = ${x} but ${printExpr(b)} = ${y} at ${[...env].map(([n, val]) => `${n}=${val}`).join(' ')}`;
  }
  return undefined;
}

/** simplifyIndex(e) printed, after checking it is equivalent to e. */
function simp(e: Expr, extents: ReadonlyMap<string, number>): string {
  return simpFree(e, extents, new Map());
}

/**
 * simplifyIndex(e) given only `known` extents, printed, after checking it is equivalent to e over
 * the known extents and `free` ranges for the variables the simplifier is not told about.
 */
function simpFree(e: Expr, known: ReadonlyMap<string, number>, free: ReadonlyMap<string, number>): string {
  const s = simplifyIndex(e, known);
  expect(differs(e, s, new Map([...known, ...free]))).toBeUndefined();
  return printExpr(s);
}

const hasDivMod = (s: string) => s.includes('/') || s.includes('%');

describe('simplifyIndex: view index chains collapse', () => {
  const lin = add(add(mul(i, 12), mul(j, 4)), k); // a [5,3,4] row-major linear index
  const e3 = ext({ i: 5, j: 3, k: 4 });

  it('reshape split: ((i·12 + j·4 + k) / 4) % 3 → j when k < 4, j < 3', () => {
    expect(simp(mod(div(lin, 4), 3), e3)).toBe('j');
  });
  it('the other coordinates of the same split', () => {
    expect(simp(div(lin, 12), e3)).toBe('i');
    expect(simp(mod(lin, 4), e3)).toBe('k');
    expect(simp(div(lin, 4), e3)).toBe('((i * 3) + j)');
    expect(simp(mod(lin, 12), e3)).toBe('((j * 4) + k)');
  });
  it('reshape merge: (r / 5)·5 + r % 5 → r', () => {
    expect(simp(add(mul(div(v('r'), 5), 5), mod(v('r'), 5)), ext({ r: 10 }))).toBe('r');
    expect(simp(add(add(mul(div(v('r'), 5), 5), mul(v('g'), 15)), mod(v('r'), 5)), ext({ r: 15, g: 2 }))).toBe('((g * 15) + r)');
  });
  it('a split of a split of a linear index', () => {
    // [6,4] viewed as [2,3,4] viewed as [24] and back to [6,4]: coordinates come back unchanged.
    const e = ext({ a: 6, b: 4 });
    const flat = add(mul(v('a'), 4), v('b'));
    const [x, y, z] = [div(flat, 12), mod(div(flat, 4), 3), mod(flat, 4)];
    const back = add(add(mul(x, 12), mul(y, 4)), z);
    expect(simp(div(back, 4), e)).toBe('a');
    expect(simp(mod(back, 4), e)).toBe('b');
  });
  it('a range that fits: x % d → x and x / d → 0 when 0 ≤ x < d', () => {
    expect(simp(mod(i, 8), ext({ i: 5 }))).toBe('i');
    expect(simp(div(i, 8), ext({ i: 5 }))).toBe('0');
    expect(simp(mod(mul(i, 6), 3), ext({ i: 10 }))).toBe('0');
    expect(simp(div(mul(i, 6), 3), ext({ i: 10 }))).toBe('(i * 2)');
  });
  // Missed simplification (regression in dd07f53's gcd-based rewrite, value still correct): the
  // fallback in simplifyAtom returns the mod unchanged when no term is divisible by d
  // (`q.terms.size === 0`), so (i + 8) % 4 keeps its 8; the previous version gave (i % 4).
  it('a constant offset that is a multiple of the divisor moves out', () => {
    expect(simp(mod(add(i, c(8)), 4), ext({ i: 5 }))).toBe('(i % 4)');
    expect(simp(div(add(i, c(8)), 4), ext({ i: 4 }))).toBe('2');
    expect(simp(div(add(i, c(9)), 4), ext({ i: 3 }))).toBe('2');
  });
  // Missed simplification (regression in dd07f53, value still correct): with d = 1 no gcd candidate
  // is > 1, and the fallback moves every term into the quotient and returns the remainder as the
  // unfolded expression (0 % 1), which a second simplifyIndex call folds to 0 (see idempotence below).
  it('mod and div by 1', () => {
    expect(simp(mod(i, 1), ext({ i: 5 }))).toBe('0');
    expect(simp(div(i, 1), ext({ i: 5 }))).toBe('i');
    expect(simpFree(div(i, 1), ext({}), ext({ i: 40 }))).toBe('i'); // i's extent unknown
  });
  it('constants fold', () => {
    expect(simp(add(c(2), c(3)), ext({}))).toBe('5');
    expect(simp(div(c(7), 2), ext({}))).toBe('3');
    expect(simp(mod(c(7), 2), ext({}))).toBe('1');
    expect(simp(mul(add(i, c(1)), 3), ext({ i: 4 }))).toBe('((i * 3) + 3)');
    expect(simp(sub(add(i, j), i), ext({ i: 3, j: 3 }))).toBe('j');
  });
  it('nested division: (i / 2) / 3 → i / 6 for i ≥ 0', () => {
    expect(simp(div(div(i, 2), 3), ext({ i: 50 }))).toBe('(i / 6)');
    expect(simp(mod(div(i, 2), 3), ext({ i: 6 }))).toBe('(i / 2)');
  });
  it('clamps decided by bounds disappear', () => {
    const clamp = (x: Expr, n: number) => bin('min', bin('max', x, c(0)), c(n - 1));
    expect(simp(clamp(i, 4), ext({ i: 4 }))).toBe('i');
    expect(simp(clamp(sub(i, c(1)), 4), ext({ i: 4 }))).not.toBe('(i + -1)'); // i − 1 can be −1
  });
  it('comparisons decided by bounds fold to constants (pad and concat conditions)', () => {
    const t = simplifyIndex(bin('and', bin('ge', i, c(0)), bin('lt', i, c(4))), ext({ i: 4 }));
    expect(t.k === 'const' && t.v === 1).toBe(true);
    const f = simplifyIndex(bin('lt', add(i, c(4)), c(4)), ext({ i: 4 }));
    expect(f.k === 'const' && f.v === 0).toBe(true);
    const open = simplifyIndex(bin('ge', sub(i, c(1)), c(0)), ext({ i: 4 }));
    expect(open.k).not.toBe('const');
    expect(differs(bin('ge', sub(i, c(1)), c(0)), open, ext({ i: 4 }))).toBeUndefined();
  });
});

describe('simplifyIndex: what must not simplify', () => {
  it('possibly negative operands keep their div/mod (truncation is not floor)', () => {
    const e = ext({ i: 8 });
    // (i − 4) % 4 is −3 at i = 1 (truncating), not (i % 4) = 1
    const m = simp(mod(sub(i, c(4)), 4), e);
    expect(hasDivMod(m)).toBe(true);
    expect(differs(mod(sub(i, c(4)), 4), mod(i, 4), e)).toBeDefined();
    // (i − 4) / 4 is 0 at i = 1, not (i / 4) − 1 = −1
    const d = simp(div(sub(i, c(4)), 4), e);
    expect(hasDivMod(d)).toBe(true);
    expect(differs(div(sub(i, c(4)), 4), sub(div(i, 4), c(1)), e)).toBeDefined();
    // a negative coefficient
    expect(hasDivMod(simp(mod(sub(mul(j, 4), i), 4), ext({ i: 4, j: 3 })))).toBe(true);
  });
  it('variables without known extents keep their div/mod', () => {
    expect(simpFree(mod(i, 4), ext({}), ext({ i: 12 }))).toBe('(i % 4)');
    expect(simpFree(div(i, 8), ext({}), ext({ i: 20 }))).toBe('(i / 8)');
    const lin = add(add(mul(i, 12), mul(j, 4)), k);
    expect(hasDivMod(simpFree(mod(div(lin, 4), 3), ext({ i: 5, j: 3 }), ext({ k: 9 })))).toBe(true); // k unbounded
    expect(hasDivMod(simp(mod(div(lin, 4), 3), ext({ i: 5, j: 3, k: 5 })))).toBe(true); // k can reach 4
  });
  it('a range that does not fit keeps the mod', () => {
    expect(simp(mod(i, 4), ext({ i: 5 }))).toBe('(i % 4)');
    expect(simp(mod(mod(i, 12), 4), ext({ i: 24 }))).toContain('%');
  });
  it('non-constant divisors are left alone', () => {
    const e = bin('div', i, j);
    expect(hasDivMod(printExpr(simplifyIndex(e, ext({ i: 6, j: 3 }))))).toBe(true);
  });
  it('non-index expressions are returned as they are', () => {
    const f: Expr = { k: 'bin', op: 'add', a: { k: 'const', v: 1.5, dtype: 'f32' }, b: { k: 'const', v: 2, dtype: 'f32' }, dtype: 'f32' };
    expect(simplifyIndex(f, ext({}))).toBe(f);
  });
});

describe('bounds', () => {
  it('of leaves and arithmetic', () => {
    const e = ext({ i: 5, j: 3 });
    const bounds = (x: Expr, m: ReadonlyMap<string, number>) => boundsOf(x, m)?.map((y) => y + 0); // −0 → 0
    expect(bounds(c(7), e)).toEqual([7, 7]);
    expect(bounds(i, e)).toEqual([0, 4]);
    expect(bounds(v('u'), e)).toBeUndefined();
    expect(bounds(add(i, j), e)).toEqual([0, 6]);
    expect(bounds(sub(i, j), e)).toEqual([-2, 4]);
    expect(bounds(mul(i, -3), e)).toEqual([-12, 0]);
    expect(bounds(bin('mul', sub(i, c(2)), sub(j, c(1))), e)).toEqual([-2, 2]);
    expect(bounds(bin('max', i, j), e)).toEqual([0, 4]);
    expect(bounds(bin('min', sub(i, c(3)), j), e)).toEqual([-3, 1]);
    expect(bounds(select(bin('lt', i, j), mul(i, 2), sub(j, c(5))), e)).toEqual([-5, 8]);
  });
  it('of div and mod by positive constants of non-negative operands', () => {
    const e = ext({ i: 10 });
    expect(bounds(div(i, 3), e)).toEqual([0, 3]);
    expect(bounds(mod(i, 3), e)).toEqual([0, 2]);
    expect(bounds(mod(i, 20), e)).toEqual([0, 9]);
    expect(bounds(div(add(i, c(5)), 5), e)).toEqual([1, 2]);
  });
  it('unknown where truncation or the divisor makes it unsafe', () => {
    const e = ext({ i: 10, j: 3 });
    expect(bounds(div(sub(i, c(1)), 3), e)).toBeUndefined();
    expect(bounds(mod(sub(i, c(1)), 3), e)).toBeUndefined();
    expect(bounds(bin('div', i, j), e)).toBeUndefined();
    expect(bounds(mod(i, 0), e)).toBeUndefined();
    expect(bounds(mod(i, -3), e)).toBeUndefined();
  });
});

describe('randomized: simplified = original for every assignment, and bounds hold', () => {
  /** A random index expression over vars i, j, k with div/mod by small constants, min/max, select. */
  function randomCase(seed: number): { e: Expr; extents: Map<string, number> } {
    const r = mulberry32(seed);
    const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
    const names = ['i', 'j', 'k'].slice(0, int(1, 3));
    const extents = new Map(names.map((n) => [n, int(1, 6)]));
    const negative = r() < 0.3; // allow negative constants, coefficients and differences
    const leaf = (): Expr => (r() < 0.7 ? v(names[int(0, names.length - 1)]!) : c(negative ? int(-5, 9) : int(0, 9)));
    const gen = (depth: number): Expr => {
      const p = r();
      if (depth <= 0 || p < 0.2) return leaf();
      if (p < 0.45) return add(gen(depth - 1), gen(depth - 1));
      if (p < 0.55) return mul(gen(depth - 1), negative ? int(-3, 12) : int(0, 12));
      if (p < 0.6) return negative ? sub(gen(depth - 1), gen(depth - 1)) : add(gen(depth - 1), leaf());
      if (p < 0.75) return div(gen(depth - 1), negative ? int(-3, 7) : int(1, 7));
      if (p < 0.9) return mod(gen(depth - 1), negative ? int(-3, 7) : int(1, 7));
      if (p < 0.95) return bin(r() < 0.5 ? 'max' : 'min', gen(depth - 1), gen(depth - 1));
      return select(cond(depth - 1), gen(depth - 1), gen(depth - 1));
    };
    const cond = (depth: number): Expr => {
      const p = r();
      if (p < 0.2 && depth > 0) return bin(r() < 0.5 ? 'and' : 'or', cond(depth - 1), cond(depth - 1));
      return bin((['lt', 'le', 'gt', 'ge'] as const)[int(0, 3)]!, gen(depth), gen(depth));
    };
    // a reshape-like chain: linearize random coordinates, then split again
    if (r() < 0.25) {
      const dims = names.map((n) => extents.get(n)!);
      const strides = dims.map((_, d) => dims.slice(d + 1).reduce((a, b) => a * b, 1));
      let lin: Expr = c(0);
      names.forEach((n, d) => (lin = add(lin, mul(v(n), strides[d]!))));
      const s = strides[int(0, strides.length - 1)]!;
      return { e: mod(div(lin, s), int(1, 6)), extents };
    }
    return { e: r() < 0.15 ? cond(int(1, 3)) : gen(int(1, 5)), extents };
  }

  it('3000 random expressions', () => {
    const bad: string[] = [];
    for (let seed = 0; seed < 3000 && bad.length < 10; seed++) {
      const { e, extents } = randomCase(seed);
      const s = simplifyIndex(e, extents);
      const d = differs(e, s, extents);
      if (d) bad.push(`seed ${seed}: ${d}`);
      for (const [x, name] of [[e, 'original'], [s, 'simplified']] as const) {
        if (x.dtype !== 'i32') continue;
        const b = bounds(x, extents);
        if (!b) continue;
        for (const env of assignments(extents)) {
          const val = evaluate(x, env);
          if (val < b[0] || val > b[1]) {
            bad.push(`seed ${seed}: bounds(${name} ${printExpr(x)}) = [${b}] but it is ${val} at ${[...env].join(' ')}`);
            break;
          }
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('simplification is idempotent (one call reaches the normal form)', () => {
    const grew: string[] = [];
    for (let seed = 0; seed < 1000; seed++) {
      const { e, extents } = randomCase(seed);
      if (e.dtype !== 'i32') continue;
      const s = simplifyIndex(e, extents);
      const s2 = simplifyIndex(s, extents);
      if (printExpr(s2) !== printExpr(s)) grew.push(`seed ${seed}: ${printExpr(e)} → ${printExpr(s)} → ${printExpr(s2)}`);
    }
    expect(grew.slice(0, 5)).toEqual([]);
  });
});
