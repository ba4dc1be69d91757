/**
 * @file f32 GEMM on the WGSL backend (GPU machine: `tsx bench/wgslGemm.ts`, SIZES=1024,4096,8192):
 * C = A·B for n×n×n through the whole compiler (one matmul kernel), for each register-blocking tile of
 * TILES (default: the wide 128×128 GEMM and the register tiles), the best tile per size reported. Times one submission of
 * REPS runs after a warm-up, wall clock around queue.onSubmittedWorkDone; checks 16 elements against
 * an f64 dot product. ROBUSTNESS=on,off also measures without Dawn's bounds clamps. Prints one JSON line per size.
 */
import { wgslBackendWith } from '../backends/wgsl/executable.ts';
import type { WgslExecutable } from '../backends/wgsl/executable.ts';
import type { GemmTile } from '../backends/wgsl/codegen.ts';
import { GraphBuilder } from '../ir/graph.ts';
import { hostTensor } from '../ir/tensor.ts';
import { compileOn } from '../runtime/compile.ts';

const sizes = (process.env.SIZES ?? '1024,4096,8192').split(',').map(Number);
const ALL_TILES: Array<GemmTile | 'wide'> = ['wide',
  { tm: 4, tn: 4, bk: 16 }, { tm: 8, tn: 4, bk: 16 }, { tm: 8, tn: 8, bk: 8, vec: true }, { tm: 8, tn: 8, bk: 16, vec: true },
  { tm: 4, tn: 8, bk: 16, vec: true }, { tm: 8, tn: 4, bk: 8, vec: true },
];
// TILES=wide,8x4/16 picks tiles (register tile tm x tn / bk, 'v' suffix for vec4).
const TILES = process.env.TILES
  ? process.env.TILES.split(',').map((t): GemmTile | 'wide' => {
    if (t === 'wide') return 'wide';
    const m = /^(\d+)x(\d+)\/(\d+)(v?)$/.exec(t);
    if (!m) throw new Error(`TILES: bad tile '${t}'`);
    return { tm: +m[1]!, tn: +m[2]!, bk: +m[3]!, ...(m[4] ? { vec: true } : {}) };
  })
  : ALL_TILES;

const robust = (process.env.ROBUSTNESS ?? 'on').split(',').map((r) => r !== 'off');
for (const n of sizes) {
  const b = new GraphBuilder(`gemm${n}`);
  const A = b.input('a', { shape: [n, n], dtype: 'f32' }), B = b.input('b', { shape: [n, n], dtype: 'f32' });
  b.output('c', b.op('matmul', [A, B]));
  const g = b.build();
  const a = new Float32Array(n * n), bb = new Float32Array(n * n);
  for (let i = 0; i < a.length; i++) { a[i] = Math.random() - 0.5; bb[i] = Math.random() - 0.5; }
  const feeds = { a: hostTensor('f32', [n, n], a), b: hostTensor('f32', [n, n], bb) };
  const results: Array<{ tile: string; ms: number; tflops: number; maxRelErr: number }> = [];
  for (const robustness of robust) for (const tile of TILES) {
    const name = `${tile === 'wide' ? 'wide128' : `${tile.tm}x${tile.tn}/bk${tile.bk}${tile.vec ? '/vec4' : ''}`}${robustness ? '' : '/norobust'}`;
    try {
      const backend = wgslBackendWith({ gemm: tile, reductions: 'workgroup', robustness });
      const exe = (await compileOn(backend, g, { precision: 'f32' })) as WgslExecutable;
      const out = await exe.run(feeds, ['c']);
      let err = 0;
      for (let q = 0; q < 16; q++) {
        const i = (q * 7919) % n, j = (q * 104729) % n;
        let s = 0, sa = 0;
        for (let p = 0; p < n; p++) { s += a[i * n + p]! * bb[p * n + j]!; sa += Math.abs(a[i * n + p]! * bb[p * n + j]!); }
        err = Math.max(err, Math.abs(out.c!.data[i * n + j]! - s) / sa);
      }
      const reps = n <= 1024 ? 50 : n <= 4096 ? 10 : 4;
      await exe.time(2);
      const ms = (await exe.time(reps)) / reps;
      console.error(`n=${n} ${name}: ${ms.toFixed(3)} ms`);
      results.push({ tile: name, ms, tflops: (2 * n ** 3) / (ms * 1e-3) / 1e12, maxRelErr: err });
      exe.dispose();
    } catch (e) {
      results.push({ tile: name, ms: NaN, tflops: 0, maxRelErr: NaN });
      console.error(`n=${n} tile ${JSON.stringify(tile)}: ${(e as Error).message.slice(0, 300)}`);
    }
  }
  const best = results.reduce((x, y) => (y.tflops > x.tflops ? y : x));
  console.log(JSON.stringify({ bench: 'wgsl-f32-gemm', n, best, all: results }));
}
process.exit(0);
