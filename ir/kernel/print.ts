/**
 * @file Text form of the kernel IR (for KILN_DEBUG, `kiln compile --report`, and golden tests).
 *
 *   buffers:
 *     b0 input x f32[8·784]
 *     b5 temp f32[8·256] @ 0
 *   kernel k1_matmul matmul batch=[] m=8 n=256 k=784 acc=f32 {
 *     a = load b0[i*784 + p]
 *     b = load b1[j*784 + p]
 *     store b5[i*256 + j] = max(%acc + load b2[j], 0)
 *   }
 */
import { formatNumber } from '../printer.ts';
import type { AttentionTile, BufferDecl, Expr, Kernel, KernelProgram, Stmt, TileSchedule } from './types.ts';

const INFIX: Record<string, string> = {
  add: '+', sub: '-', mul: '*', div: '/', mod: '%', eq: '==', ne: '!=', lt: '<', le: '<=', gt: '>', ge: '>=',
  and: '&&', or: '||', xor: '^^',
};

export function printExpr(e: Expr): string {
  switch (e.k) {
    case 'const': return e.dtype === 'i32' || e.dtype === 'f32' ? formatNumber(e.v) : `${e.dtype}(${formatNumber(e.v)})`;
    case 'var': return e.name;
    case 'ref': return `%${e.name}`;
    case 'load': return `load b${e.buf}[${printExpr(e.index)}]`;
    case 'un': return `${e.op}(${printExpr(e.a)})`;
    case 'bin': {
      const op = INFIX[e.op];
      return op ? `(${printExpr(e.a)} ${op} ${printExpr(e.b)})` : `${e.op}(${printExpr(e.a)}, ${printExpr(e.b)})`;
    }
    case 'select': return `select(${printExpr(e.c)}, ${printExpr(e.a)}, ${printExpr(e.b)})`;
    case 'cast': return `${e.dtype}(${printExpr(e.a)})`;
    case 'random': return `philox_${e.dist}(${printExpr(e.s0)}, ${printExpr(e.s1)}, stream=${e.stream}, ${printExpr(e.index)})`;
  }
}

function printStmts(stmts: readonly Stmt[], ind: string, out: string[]): void {
  for (const s of stmts) {
    switch (s.k) {
      case 'let':
        out.push(`${ind}%${s.name} = ${printExpr(s.value)}`);
        break;
      case 'loop':
        out.push(`${ind}for ${s.var} < ${s.extent} {`);
        printStmts(s.body, ind + '  ', out);
        out.push(`${ind}}`);
        break;
      case 'reduce':
        out.push(`${ind}%${s.acc} = reduce_${s.op}<${s.dtype}> ${s.var} < ${s.extent} {`);
        printStmts(s.body, ind + '  ', out);
        out.push(`${ind}  yield ${printExpr(s.value)}`);
        out.push(`${ind}}`);
        break;
      case 'store':
        out.push(`${ind}store b${s.buf}[${printExpr(s.index)}] ${s.mode === 'add' ? '+=' : '='} ${printExpr(s.value)}`);
        break;
    }
  }
}

export function printKernel(k: Kernel): string {
  const out: string[] = [];
  switch (k.kind) {
    case 'loop':
      out.push(`kernel ${k.name} loop grid=[${k.grid.join(',')}] {`);
      if (k.rows) out.push(`  rows ${k.rows.kind === 'block' ? `block threads=${k.rows.threads}` : `column points=${k.rows.points} lanes=${k.rows.lanes} split=${k.rows.split}`}`);
      printStmts(k.body, '  ', out);
      break;
    case 'matmul':
      out.push(`kernel ${k.name} matmul batch=[${k.batch.join(',')}] m=${k.m} n=${k.n} k=${k.k} acc=${k.accDType} {`);
      if (k.tile) out.push(`  tile ${printMatmulTile(k.tile)}`);
      out.push(`  a = ${printExpr(k.a)}`);
      out.push(`  b = ${printExpr(k.b)}`);
      printStmts(k.epilogue, '  ', out);
      break;
    case 'attention':
    case 'attention_grad': {
      out.push(`kernel ${k.name} ${k.kind} batch=[${k.batch.join(',')}] sq=${k.sq} sk=${k.sk} dk=${k.dk} dv=${k.dv} causal=${k.causal} scale=${formatNumber(k.scale)}${k.tile ? ` ${printTile(k.tile)}` : ''} {`);
      out.push(`  q = ${printExpr(k.q)}`, `  k = ${printExpr(k.key)}`, `  v = ${printExpr(k.v)}`);
      if (k.kind === 'attention') out.push(`  store b${k.out.buf}[${printExpr(k.out.index)}] = out`);
      else {
        out.push(`  o = ${printExpr(k.o)}`, `  dout = ${printExpr(k.dout)}`);
        for (const w of ['dQ', 'dK', 'dV'] as const) {
          const t = k[w];
          if (t) out.push(`  store b${t.buf}[${printExpr(t.index)}] = ${w}`);
        }
      }
      break;
    }
  }
  out.push('}');
  return out.join('\n');
}

/** tile=bq64,bk64,w4,s2,pad64x64[,chunks2][,dq128x32w4] */
export function printTile(t: AttentionTile): string {
  return `tile=bq${t.bq},bk${t.bk},w${t.warps},s${t.stages},pad${t.dkPad}x${t.dvPad}${t.dkvChunks > 1 ? `,chunks${t.dkvChunks}` : ''}${t.dq ? `,dq${t.dq.bq}x${t.dq.bk}w${t.dq.warps}` : ''}${t.wgmma ? `,wgmma${t.wgmma.warpgroups}x${t.wgmma.bk}${t.wgmma.overlap ? 'o' : ''}${t.wgmma.minBlocks ? `b${t.wgmma.minBlocks}` : ''}${t.wgmma.producerWarps ? `p${t.wgmma.producerWarps}s${t.wgmma.stages ?? 2}` : ''}${t.wgmma.pingpong ? 'pp' : ''}` : ''}`;
}

/** `tensor-core block=128x128x32 warps=2x2 stages=4 mma=mma.sync.m16n8k16.bf16 a=async/k b=registers/k (default)` */
export function printMatmulTile(t: TileSchedule): string {
  if (t.provider === 'cublas' || t.provider === 'cublaslt') return `${t.provider} (${t.source})`;
  if (t.provider === 'simt') return `simt block=${t.block.m}x${t.block.n}x${t.block.k} warps=${t.warps.m}x${t.warps.n} (${t.source})`;
  const mma = t.mma ? ` mma=${t.mma.family}.m${t.mma.m}n${t.mma.n}k${t.mma.k}.${t.mma.ab}` : '';
  return `${t.provider} block=${t.block.m}x${t.block.n}x${t.block.k} warps=${t.warps.m}x${t.warps.n} stages=${t.stages}${mma} ` +
    `a=${t.a.staging}/${t.a.major} b=${t.b.staging}/${t.b.major} (${t.source})`;
}

export function printBuffer(b: BufferDecl): string {
  const where = b.kind === 'temp' && b.offset !== undefined ? ` @ ${b.offset}` : '';
  const name = b.name ? ` ${b.name}` : '';
  return `b${b.id} ${b.kind}${name} ${b.dtype}[${b.numel}]${where}`;
}

export function printProgram(p: KernelProgram): string {
  const out = [`program ${p.name} arena=${p.arenaBytes}B kernels=${p.kernels.length}`, 'buffers:'];
  for (const b of p.buffers) out.push(`  ${printBuffer(b)}`);
  for (const k of p.kernels) out.push(printKernel(k));
  return out.join('\n') + '\n';
}
