/**
 * @file A CPU interpreter of the kernel IR: runs a KernelProgram exactly as a GPU would lay it out —
 * temporaries at their planned offsets in one arena (so a memory-plan overlap corrupts results and
 * tests catch it), bools as 32-bit words, f16/bf16 as 16-bit words — with f32 arithmetic rounding
 * after every operation. It makes everything up to code generation testable without a GPU.
 *
 * Expressions and statements are compiled once into JavaScript closures over a register file.
 */
import { type DType, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundBf16, roundF16 } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import type { AttentionGradKernel, AttentionKernel, BufferDecl, Expr, Kernel, KernelProgram, LoopKernel, MatmulKernel, Stmt } from '../../ir/kernel/types.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { UNIFORM_BITS, philox4x32 } from '../../ir/philox.ts';
import { UNARY, binaryFn, castValue } from '../../ir/semantics.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { hostTensor } from '../../ir/tensor.ts';

type Mem = Float32Array | Uint16Array | Int32Array | Uint32Array;

/** One buffer's memory plus its element codec. */
interface Store {
  mem: Mem;
  get(i: number): number;
  set(i: number, v: number): void;
}

function makeStore(dtype: DType, mem: Mem): Store {
  switch (dtype) {
    case 'f16': return { mem, get: (i) => f16BitsToF32(mem[i]!), set: (i, v) => void (mem[i] = f32ToF16Bits(v)) };
    case 'bf16': return { mem, get: (i) => bf16BitsToF32(mem[i]!), set: (i, v) => void (mem[i] = f32ToBf16Bits(v)) };
    case 'bool': return { mem, get: (i) => mem[i]!, set: (i, v) => void (mem[i] = v ? 1 : 0) };
    default: return { mem, get: (i) => mem[i]!, set: (i, v) => void (mem[i] = v) };
  }
}

function allocMem(dtype: DType, n: number, buffer?: ArrayBuffer, byteOffset = 0): Mem {
  const C = dtype === 'f32' ? Float32Array : dtype === 'f16' || dtype === 'bf16' ? Uint16Array : dtype === 'i32' ? Int32Array : Uint32Array;
  return buffer ? new C(buffer, byteOffset, n) : new C(n);
}

export function deviceByteSize(dtype: DType): number {
  return dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
}

/** Round `v` to what an operation producing `dtype` yields. */
function rounder(dtype: DType): (v: number) => number {
  switch (dtype) {
    case 'f32': return Math.fround;
    case 'f16': return roundF16;
    case 'bf16': return roundBf16;
    case 'i32': return (v) => v | 0;
    case 'u32': return (v) => v >>> 0;
    case 'bool': return (v) => (v ? 1 : 0);
  }
}

type Fn = () => number;

class Compiler {
  readonly slots = new Map<string, number>();
  regs = new Float64Array(64);
  constructor(readonly stores: Store[]) {}

  slot(name: string): number {
    let s = this.slots.get(name);
    if (s === undefined) {
      s = this.slots.size;
      this.slots.set(name, s);
      if (s >= this.regs.length) {
        const r = new Float64Array(this.regs.length * 2);
        r.set(this.regs);
        this.regs = r;
      }
    }
    return s;
  }

  expr(e: Expr): Fn {
    const R = () => this.regs;
    switch (e.k) {
      case 'const': {
        const v = rounder(e.dtype)(e.v);
        return () => v;
      }
      case 'var': case 'ref': {
        const s = this.slot(e.k === 'var' ? e.name : `%${e.name}`);
        return () => R()[s]!;
      }
      case 'load': {
        const st = this.stores[e.buf]!;
        const idx = this.expr(e.index);
        const n = st.mem.length;
        return () => {
          const i = idx();
          if (!(i >= 0 && i < n)) throw new KilnError(`kernel interpreter: load b${e.buf}[${i}] is out of bounds (size ${n})`);
          return st.get(i);
        };
      }
      case 'un': {
        const f = UNARY[e.op];
        const a = this.expr(e.a);
        const r = rounder(e.dtype);
        return () => r(f(a()));
      }
      case 'bin': {
        const f = binaryFn(e.op, e.a.dtype);
        const a = this.expr(e.a), b = this.expr(e.b);
        const r = rounder(e.dtype);
        return () => r(f(a(), b()));
      }
      case 'select': {
        const c = this.expr(e.c), a = this.expr(e.a), b = this.expr(e.b);
        return () => (c() ? a() : b());
      }
      case 'cast': {
        const a = this.expr(e.a);
        const from = e.a.dtype, to = e.dtype;
        const r = rounder(to);
        return () => r(castValue(a(), from, to));
      }
      case 'random': {
        const s0 = this.expr(e.s0), s1 = this.expr(e.s1), idx = this.expr(e.index);
        const w = new Uint32Array(4);
        const r = rounder(e.dtype);
        const bits = UNIFORM_BITS[e.dtype as keyof typeof UNIFORM_BITS] ?? 24;
        const stream = e.stream;
        if (e.dist === 'uniform')
          return () => {
            const i = idx();
            philox4x32([Math.floor(i / 4), stream, 0, 0], [s0(), s1()], 10, w);
            return r((w[i % 4]! >>> (32 - bits)) * 2 ** -bits);
          };
        return () => {
          const i = idx();
          philox4x32([Math.floor(i / 4), stream, 0, 0], [s0(), s1()], 10, w);
          const k = i % 4, p = k >> 1;
          const u1 = ((w[2 * p]! >>> 8) + 1) * 2 ** -24;
          const u2 = (w[2 * p + 1]! >>> 8) * 2 ** -24;
          const rad = Math.sqrt(-2 * Math.log(u1));
          return r(rad * (k & 1 ? Math.sin(2 * Math.PI * u2) : Math.cos(2 * Math.PI * u2)));
        };
      }
    }
  }

  stmts(list: readonly Stmt[]): () => void {
    const fs = list.map((s) => this.stmt(s));
    return () => {
      for (const f of fs) f();
    };
  }

  stmt(s: Stmt): () => void {
    switch (s.k) {
      case 'let': {
        const slot = this.slot(`%${s.name}`);
        const v = this.expr(s.value);
        return () => void (this.regs[slot] = v());
      }
      case 'loop': {
        const slot = this.slot(s.var);
        const body = this.stmts(s.body);
        const n = s.extent;
        return () => {
          for (let i = 0; i < n; i++) {
            this.regs[slot] = i;
            body();
          }
        };
      }
      case 'reduce': {
        const vs = this.slot(s.var), acc = this.slot(`%${s.acc}`);
        const body = this.stmts(s.body);
        const val = this.expr(s.value);
        const n = s.extent;
        const r = rounder(s.dtype);
        switch (s.op) {
          case 'sum':
            return () => {
              let a = 0;
              for (let i = 0; i < n; i++) {
                this.regs[vs] = i;
                body();
                a = r(a + val());
              }
              this.regs[acc] = a;
            };
          case 'max': case 'min': {
            const isMax = s.op === 'max';
            return () => {
              let a = isMax ? -Infinity : Infinity;
              for (let i = 0; i < n; i++) {
                this.regs[vs] = i;
                body();
                const v = val();
                if (v !== v || a !== a) a = NaN;
                else if (isMax ? v > a : v < a) a = v;
              }
              this.regs[acc] = a;
            };
          }
          case 'argmax':
            return () => {
              let best = 0, bv = -Infinity, first = true;
              for (let i = 0; i < n; i++) {
                this.regs[vs] = i;
                body();
                const v = val();
                if (first || (bv === bv && (v > bv || v !== v))) {
                  best = i;
                  bv = v;
                  first = false;
                }
              }
              this.regs[acc] = best;
            };
        }
        break;
      }
      case 'store': {
        const st = this.stores[s.buf]!;
        const idx = this.expr(s.index), v = this.expr(s.value);
        const n = st.mem.length;
        const add = s.mode === 'add';
        const r = rounder(bufDType(st));
        return () => {
          const i = idx();
          if (!(i >= 0 && i < n)) throw new KilnError(`kernel interpreter: store b${s.buf}[${i}] is out of bounds (size ${n})`);
          st.set(i, add ? r(st.get(i) + v()) : v());
        };
      }
    }
    throw new Error('unreachable');
  }

  /** Set grid/batch vars and run `body` for every point of `extents` (row-major). */
  grid(names: readonly string[], extents: readonly number[], body: () => void): () => void {
    const slots = names.map((n) => this.slot(n));
    const total = extents.reduce((a, b) => a * b, 1);
    return () => {
      for (let t = 0; t < total; t++) {
        let rem = t;
        for (let d = extents.length - 1; d >= 0; d--) {
          this.regs[slots[d]!] = rem % extents[d]!;
          rem = Math.floor(rem / extents[d]!);
        }
        body();
      }
    };
  }
}

const dtypeOfStore = new WeakMap<Store, DType>();
/** The memory behind each buffer's store (so an in-place output can share its input's). */
const memOfStore = new WeakMap<Store, Mem>();
function bufDType(s: Store): DType {
  return dtypeOfStore.get(s)!;
}

function compileKernel(c: Compiler, k: Kernel): () => void {
  switch (k.kind) {
    case 'loop': return compileLoop(c, k);
    case 'matmul': return compileMatmul(c, k);
    case 'attention': case 'attention_grad': return compileAttention(c, k);
  }
}

function compileLoop(c: Compiler, k: LoopKernel): () => void {
  return c.grid(k.grid.map((_, i) => `g${i}`), k.grid, c.stmts(k.body));
}

function compileMatmul(c: Compiler, k: MatmulKernel): () => void {
  const [i, j, p, acc] = [c.slot('i'), c.slot('j'), c.slot('p'), c.slot('%acc')];
  const a = c.expr(k.a), b = c.expr(k.b);
  const epi = c.stmts(k.epilogue);
  const r = rounder(k.accDType);
  const inner = () => {
    const R = c.regs;
    for (let ii = 0; ii < k.m; ii++)
      for (let jj = 0; jj < k.n; jj++) {
        let s = 0;
        for (let pp = 0; pp < k.k; pp++) {
          c.regs[i] = ii; c.regs[j] = jj; c.regs[p] = pp;
          s = r(s + a() * b());
        }
        c.regs[i] = ii; c.regs[j] = jj;
        c.regs[acc] = s;
        epi();
      }
    void R;
  };
  return c.grid(k.batch.map((_, x) => `b${x}`), k.batch, inner);
}

function compileAttention(c: Compiler, k: AttentionKernel | AttentionGradKernel): () => void {
  const [s, t, d, e] = [c.slot('s'), c.slot('t'), c.slot('d'), c.slot('e')];
  const q = c.expr(k.q), key = c.expr(k.key), v = c.expr(k.v);
  const f32 = Math.fround;
  const targets: Array<{ st: Store; idx: () => number; rows: 's' | 't'; cols: 'd' | 'e'; which: 'out' | 'dQ' | 'dK' | 'dV' }> = [];
  const add = (x: { buf: number; index: Expr } | undefined, rows: 's' | 't', cols: 'd' | 'e', which: 'out' | 'dQ' | 'dK' | 'dV') => {
    if (x) targets.push({ st: c.stores[x.buf]!, idx: c.expr(x.index), rows, cols, which });
  };
  let o: Fn | undefined, dout: Fn | undefined;
  if (k.kind === 'attention') add(k.out, 's', 'e', 'out');
  else {
    o = c.expr(k.o);
    dout = c.expr(k.dout);
    add(k.dQ, 's', 'd', 'dQ');
    add(k.dK, 't', 'd', 'dK');
    add(k.dV, 't', 'e', 'dV');
  }
  const R = () => c.regs;
  const read = (f: Fn, a: number, av: number, b: number, bv: number) => {
    R()[a] = av;
    R()[b] = bv;
    return f();
  };
  const body = () => {
    const { sq, sk, dk, dv, scale, causal } = k;
    const Q = Array.from({ length: sq }, (_, si) => Array.from({ length: dk }, (_, di) => read(q, s, si, d, di)));
    const K = Array.from({ length: sk }, (_, ti) => Array.from({ length: dk }, (_, di) => read(key, t, ti, d, di)));
    const V = Array.from({ length: sk }, (_, ti) => Array.from({ length: dv }, (_, ei) => read(v, t, ti, e, ei)));
    const P = Q.map((qr, si) => {
      const sc = K.map((kr, ti) => (causal && ti > si ? -Infinity : f32(scale * f32(qr.reduce((acc, qv, di) => f32(acc + qv * kr[di]!), 0)))));
      const m = Math.max(...sc);
      const ex = sc.map((x) => f32(Math.exp(x - m)));
      const z = ex.reduce((a, b) => f32(a + b), 0);
      return ex.map((x) => f32(x / z));
    });
    const write = (which: string, rows: number, cols: number, val: (r: number, c: number) => number) => {
      for (const tg of targets.filter((x) => x.which === which))
        for (let r = 0; r < rows; r++)
          for (let cc = 0; cc < cols; cc++) {
            R()[tg.rows === 's' ? s : t] = r;
            R()[tg.cols === 'd' ? d : e] = cc;
            tg.st.set(tg.idx(), val(r, cc));
          }
    };
    if (k.kind === 'attention') {
      write('out', sq, dv, (si, ei) => P[si]!.reduce((acc, pv, ti) => f32(acc + pv * V[ti]![ei]!), 0));
      return;
    }
    const O = Array.from({ length: sq }, (_, si) => Array.from({ length: dv }, (_, ei) => read(o!, s, si, e, ei)));
    const dO = Array.from({ length: sq }, (_, si) => Array.from({ length: dv }, (_, ei) => read(dout!, s, si, e, ei)));
    const rowsum = dO.map((r, si) => r.reduce((acc, x, ei) => f32(acc + x * O[si]![ei]!), 0));
    const dS = P.map((pr, si) => pr.map((pv, ti) => {
      const dp = dO[si]!.reduce((acc, x, ei) => f32(acc + x * V[ti]![ei]!), 0);
      return f32(scale * f32(pv * (dp - rowsum[si]!)));
    }));
    write('dQ', sq, dk, (si, di) => dS[si]!.reduce((acc, x, ti) => f32(acc + x * K[ti]![di]!), 0));
    write('dK', sk, dk, (ti, di) => dS.reduce((acc, row, si) => f32(acc + row[ti]! * Q[si]![di]!), 0));
    write('dV', sk, dv, (ti, ei) => P.reduce((acc, row, si) => f32(acc + row[ti]! * dO[si]![ei]!), 0));
  };
  return c.grid(k.batch.map((_, x) => `b${x}`), k.batch, body);
}

/**
 * A KernelProgram with its memory: external buffers (inputs, outputs, constants) and the arena.
 * Inputs keep their values between runs, so resident state stays put; `run` executes every kernel.
 */
export class ProgramMemory {
  private readonly stores: Store[] = [];
  private readonly runner: () => void;

  constructor(readonly program: KernelProgram) {
    const p = program;
    const arena = new ArrayBuffer(Math.max(8, p.arenaBytes));
    const touched = new Set<number>();
    for (const k of p.kernels) {
      const a = kernelAccess(k);
      for (const b of [...a.reads, ...a.writes]) touched.add(b);
    }
    // Outputs written in place (BufferDecl.inPlaceOf) share their input's memory: inputs first.
    const shared = p.buffers.filter((b) => b.inPlaceOf !== undefined);
    for (const b of [...p.buffers.filter((x) => x.inPlaceOf === undefined), ...shared]) {
      let mem: Mem;
      if (b.inPlaceOf !== undefined) mem = memOfStore.get(this.stores[b.inPlaceOf]!)!;
      else if (b.kind === 'temp' && !touched.has(b.id)) mem = allocMem(b.dtype, 0); // dropped by fusion: no memory
      else if (b.kind === 'temp') {
        if (b.offset === undefined) throw new KilnError(`kernel interpreter: temp buffer b${b.id} has no planned offset`);
        if (b.offset + b.numel * deviceByteSize(b.dtype) > p.arenaBytes) throw new KilnError(`kernel interpreter: b${b.id} lies outside the arena`);
        mem = allocMem(b.dtype, b.numel, arena, b.offset);
      } else mem = allocMem(b.dtype, b.numel);
      const st = makeStore(b.dtype, mem);
      dtypeOfStore.set(st, b.dtype);
      memOfStore.set(st, mem);
      this.stores[b.id] = st;
      if (b.kind === 'const') b.data!.forEach((v, i) => st.set(i, v));
    }
    const c = new Compiler(this.stores);
    const fns = p.kernels.map((k) => compileKernel(c, k));
    this.runner = () => {
      for (const f of fns) f();
    };
  }

  private buffer(name: string, map: ReadonlyMap<string, number>, what: string): BufferDecl {
    const id = map.get(name);
    if (id === undefined) throw new KilnError(`program ${this.program.name}: no ${what} '${name}'`);
    return this.program.buffers[id]!;
  }

  setInput(name: string, x: HostTensor): void {
    const b = this.buffer(name, this.program.inputs, 'input');
    if (x.dtype !== b.dtype || x.data.length !== b.numel)
      throw new KilnError(`program ${this.program.name}: input '${name}' expects ${b.dtype}[${b.numel}], got ${x.dtype}[${x.data.length}]`);
    const st = this.stores[b.id]!;
    for (let i = 0; i < b.numel; i++) st.set(i, x.data[i]!);
  }

  getInput(name: string): number[] {
    const b = this.buffer(name, this.program.inputs, 'input');
    const st = this.stores[b.id]!;
    return Array.from({ length: b.numel }, (_, i) => st.get(i));
  }

  getOutput(name: string): number[] {
    const b = this.buffer(name, this.program.outputs, 'output');
    const st = this.stores[b.id]!;
    return Array.from({ length: b.numel }, (_, i) => st.get(i));
  }

  run(): void {
    this.runner();
  }
}

/** Run `p` once: `inputs` by graph input name; returns every graph output (flat) by name. */
export function runProgram(p: KernelProgram, inputs: Readonly<Record<string, HostTensor>>): Record<string, HostTensor> {
  const m = new ProgramMemory(p);
  for (const name of p.inputs.keys()) {
    const x = inputs[name];
    if (!x) throw new KilnError(`program ${p.name}: input '${name}' was not fed`);
    m.setInput(name, x);
  }
  m.run();
  const out: Record<string, HostTensor> = {};
  for (const [name, id] of p.outputs) out[name] = hostTensor(p.buffers[id]!.dtype, [p.buffers[id]!.numel], m.getOutput(name));
  return out;
}
