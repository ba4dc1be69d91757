/**
 * @file Inception-v3 features on a backend against the PyTorch golden (golden/data/inception, width ÷8,
 * random weights): `tsx bench/inceptionCheck.ts [backend [case ...]]` (cases fid80, fid299, tv299; default all) prints, per case, the normwise relative error
 * max|kiln − ref| / max|ref| (f32; the test's bound is 1e-4), compile+first-run time and the time of a
 * second run.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadInception, traceInceptionFeatures } from '../models/inception.ts';
import { backendByName } from '../runtime/backends.ts';
import { loadSafetensors } from '../runtime/safetensors.ts';
import { Session } from '../runtime/session.ts';

const backend = backendByName(process.argv[2] ?? 'cuda');
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'data', 'inception');
const cases = loadSafetensors(join(dir, 'cases.safetensors')).tensors;
const only = process.argv.slice(3);
const all = [['fid', null, 'images80', 'fid80'], ['fid', 299, 'images32', 'fid299'], ['torchvision', 299, 'images32', 'tv299']] as const;
for (const [variant, resize, img, ref] of all.filter((c) => !only.length || only.includes(c[3]))) {
  const { model, weights } = loadInception(join(dir, 'w8.safetensors'), { variant, resize });
  const x = cases.get(img)!, want = cases.get(ref)!.data;
  const t0 = performance.now();
  const s = await Session.open(backend, traceInceptionFeatures(model, { batch: 2, height: x.shape[2]!, width: x.shape[3]! }), weights, { precision: 'f32' });
  const got = (await s.run({ images: x }, ['features'])).features!.data;
  const t1 = performance.now();
  await s.run({ images: x }, ['features']);
  const t2 = performance.now();
  s.dispose();
  let d = 0, m = 0;
  for (let i = 0; i < want.length; i++) { d = Math.max(d, Math.abs(Number(got[i]) - Number(want[i]))); m = Math.max(m, Math.abs(Number(want[i]))); }
  console.log(`| inception ${variant} ${ref} on ${backend.name} | relErr ${(d / m).toExponential(2)} | compile+run ${(t1 - t0).toFixed(0)} ms | run ${(t2 - t1).toFixed(1)} ms |`);
}
