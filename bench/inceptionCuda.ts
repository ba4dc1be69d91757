/**
 * @file The full-width Inception-v3 FID network (2048-d pool features) on a backend against the CPU
 * oracle's features, with seeded random weights (He-scaled convolutions, BatchNorm statistics as in
 * golden/inception_golden.py) that both machines build the same way, so that the slow CPU side runs
 * once on the development machine and the GPU window only runs the device side:
 *   tsx bench/inceptionCuda.ts cpu FILE            CPU features of the 2 check images → FILE (safetensors)
 *   tsx bench/inceptionCuda.ts check FILE BACKEND [BATCH]
 *       BATCH (default 32) images on BACKEND (f32), the first two being the CPU's: normwise relative error
 *       max|dev − cpu| / max|cpu| over those two (bound 1e-4, as the golden test's), compile+first-run
 *       time, and the time of a second run: images per second of FID feature extraction.
 * Images: 2 of 64×64 in [0, 1] (seeded), bilinearly resized to 299 inside the program (pytorch-fid's path).
 */
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { InceptionV3, traceInceptionFeatures } from '../models/inception.ts';
import { backendByName } from '../runtime/backends.ts';
import { mulberry32 } from '../runtime/prng.ts';
import { loadSafetensors, saveSafetensors } from '../runtime/safetensors.ts';
import { Session } from '../runtime/session.ts';

const SIDE = 64;

/** Seeded normal numbers (Box–Muller on mulberry32). */
function normals(rand: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())), a = 2 * Math.PI * rand();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

function randomInception(): { model: InceptionV3; weights: Map<string, HostTensor> } {
  const model = new InceptionV3({ variant: 'fid', width: 1, resize: 299, normalizeInput: true });
  const rand = mulberry32(2015);
  const weights = new Map<string, HostTensor>();
  for (const [name, p] of model.namedParameters()) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (name.endsWith('conv.weight')) {
      const fanIn = n / p.shape[0]!;
      v = normals(rand, n).map((z) => z * Math.sqrt(2 / fanIn));
    } else if (name.endsWith('bn.weight')) v = normals(rand, n).map((z) => 1 + 0.1 * z);
    else if (name.endsWith('bn.bias')) v = normals(rand, n).map((z) => 0.1 * z);
    else if (name.endsWith('running_mean')) v = normals(rand, n).map((z) => 0.1 * z);
    else if (name.endsWith('running_var')) v = Float32Array.from({ length: n }, () => 0.5 + rand());
    else throw new Error(`unexpected Inception parameter ${name}`);
    weights.set(name, hostTensor('f32', p.shape, v));
  }
  return { model, weights };
}

function images(batch: number): HostTensor {
  const rand = mulberry32(299);
  return hostTensor('f32', [batch, 3, SIDE, SIDE], Float32Array.from({ length: batch * 3 * SIDE * SIDE }, () => rand()));
}

async function features(backendName: string, batch: number): Promise<{ f: Float32Array; firstMs: number; runMs: number }> {
  const { model, weights } = randomInception();
  const x = images(batch);
  const t0 = performance.now();
  const s = await Session.open(backendByName(backendName), traceInceptionFeatures(model, { batch, height: SIDE, width: SIDE }), weights, { precision: 'f32' });
  const f = (await s.run({ images: x }, ['features'])).features!.data as Float32Array;
  const t1 = performance.now();
  await s.run({ images: x }, ['features']);
  const t2 = performance.now();
  s.dispose();
  return { f, firstMs: t1 - t0, runMs: t2 - t1 };
}

const [cmd, file, backend, batchArg] = process.argv.slice(2);
if (cmd === 'cpu' && file) {
  const { f, firstMs } = await features('cpu', 2);
  saveSafetensors(file, new Map([['features', hostTensor('f32', [2, 2048], f)]]));
  console.log(`cpu features [2, 2048] → ${file} in ${(firstMs / 1000).toFixed(1)} s; max |f| ${f.reduce((m, v) => Math.max(m, Math.abs(v)), 0).toExponential(3)}`);
} else if (cmd === 'check' && file && backend) {
  // One compile: the batch's first 2 images are the CPU check images (images(B) starts with images(2),
  // and a feature row depends only on its image: BatchNorm uses its running statistics).
  const want = loadSafetensors(file).tensors.get('features')!.data;
  const batch = Number(batchArg ?? 32);
  const { f, firstMs, runMs } = await features(backend, batch);
  let d = 0, m = 0;
  for (let i = 0; i < want.length; i++) { d = Math.max(d, Math.abs(f[i]! - Number(want[i]))); m = Math.max(m, Math.abs(Number(want[i]))); }
  console.log(`| Inception-v3 FID net, full width, 64 px → 299, batch ${batch} | ${backend} vs cpu (2 images × 2048) relErr ${(d / m).toExponential(2)} (bound 1e-4) | compile+first run ${(firstMs / 1000).toFixed(1)} s | run ${runMs.toFixed(1)} ms = ${Math.round((batch * 1000) / runMs)} images/s |`);
} else {
  console.error('usage: tsx bench/inceptionCuda.ts cpu FILE | check FILE BACKEND [BATCH]');
  process.exit(2);
}
