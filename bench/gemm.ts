/**
 * @file Benchmark: bf16 GEMMs (f32 accumulate, bf16 out) as Kiln compiles them — the tiling stage's
 * schedule rendered by the CUDA backend — at 4096³, 8192³ and the LightningDiT-B/XL layer shapes
 * (forward x·Wᵀ, input gradient dY·W, weight gradient dYᵀ·X). Prints one JSON line per GEMM;
 * bench/gemm.sh puts them next to torch.matmul (cuBLAS) measured in the same call (bench/gemm_torch.py).
 *
 *   KILN_BACKEND=cuda tsx bench/gemm.ts            (all shapes)   tsx bench/gemm.ts cube8192 B_fc1_fwd
 *   KILN_GEMM_AUTOTUNE=1 ...: the provider measured per shape (generated, cuBLAS, cuBLASLt) as a user gets it;
 *   KILN_GEMM_TUNING=off ...: the untuned default (the library: backends/cuda/gemmDefault.ts);
 *   KILN_GEMM_TUNING=off KILN_GEMM_DEFAULT=generated ...: the generated tensor-core kernel alone.
 */
import type { CudaExecutable } from '../backends/cuda/executable.ts';
import { backendByName, cudaOptionsFromEnv } from '../runtime/backends.ts';
import { CudaDriver } from '../backends/cuda/driver.ts';
import { tunedProgram } from '../backends/cuda/build.ts';
import { compile } from '../compiler/compile.ts';
import { printMatmulTile } from '../ir/kernel/print.ts';
import { GEMM_SHAPES, gemmFeeds, gemmGraph } from './gemmShapes.ts';

async function bench(name: string): Promise<Record<string, unknown>> {
  const spec = GEMM_SHAPES[name];
  if (!spec) throw new Error(`unknown GEMM ${name}; known: ${Object.keys(GEMM_SHAPES).join(' ')}`);
  const [m, n, k, layout] = spec;
  const graph = gemmGraph(name, m, n, k, layout);
  const program = compile(graph).program;
  const exe = (await backendByName('cuda').compile(graph, program)) as CudaExecutable;
  // The schedule that runs: the tiling stage's, or the measured one from the tuning cache (written by
  // bench/gemmTune.ts, or by the backend itself under KILN_GEMM_AUTOTUNE=1 as it compiled just now).
  const options = cudaOptionsFromEnv();
  const tuned = tunedProgram(CudaDriver.get(), program, options).kernels.find((x) => x.kind === 'matmul');
  await exe.run(gemmFeeds(graph), []);
  const cuda = CudaDriver.get();
  for (let i = 0; i < 3; i++) exe.launchAll();
  cuda.synchronize();
  let t = performance.now();
  exe.launchAll();
  cuda.synchronize();
  const reps = Math.max(5, Math.min(200, Math.ceil(300 / (performance.now() - t))));
  t = performance.now();
  for (let i = 0; i < reps; i++) exe.launchAll();
  cuda.synchronize();
  const ms = (performance.now() - t) / reps;
  exe.dispose();
  return {
    gemm: name, m, n, k, layout, ms: Number(ms.toFixed(4)), tflops: Number(((2 * m * n * k) / ms / 1e9).toFixed(1)),
    tile: tuned?.kind === 'matmul' && tuned.tile ? printMatmulTile(tuned.tile) : '', device: cuda.name,
  };
}

const names = process.argv.slice(2);
for (const n of names.length ? names : Object.keys(GEMM_SHAPES)) console.log(JSON.stringify(await bench(n)));
