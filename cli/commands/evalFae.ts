/**
 * @file `kiln eval fae`: how much an FAE keeps, on Fashion-MNIST, as the paper reports it at its scale:
 * reconstruction PSNR / SSIM of test images through encoder → adapter (posterior mean) → feature
 * decoder → pixel decoder, and the linear-probe accuracy of the feature decoder's reconstructed
 * features against that of the frozen encoder's raw features (each probe trained on the train split's
 * features of its kind, mean-pooled, scored on the test split). Optionally a PNG of originals above
 * their reconstructions.
 *
 * Also `sslFeatureEncoder`, the SSL encoder as `kiln eval fd`'s feature space (mean-pooled tokens).
 */
import { type Command, Option } from 'commander';
import type { Backend } from '../../backends/backend.ts';
import { type Tensor, trace } from '../../compiler/dsl/index.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { FAE } from '../../models/fae/model.ts';
import { faeConfigs } from '../../models/fae/config.ts';
import { encodeImages, linearProbe } from '../../models/ssl/probe.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { loadFashionMnist } from '../../runtime/data/fashionMnist.ts';
import { mean, psnr, ssim } from '../../runtime/eval/imageMetrics.ts';
import { Session } from '../../runtime/session.ts';
import { writeImageGrid } from '../../runtime/train/imageGrid.ts';
import type { FeatureEncoder } from '../evalInputs.ts';
import { applyWeights, loadWeights } from '../jobs/weights.ts';
import { backendOption, positiveInt } from '../options.ts';
import { loadSslEncoder } from './evalProbe.ts';

const warn = (s: string) => console.error(`warning: ${s}`);

/** The SSL encoder of a `kiln train ssl-encoder` run as a feature space: mean-pooled final tokens, images in [−1, 1]. */
export function sslFeatureEncoder(path: string, backend: Backend, batch: number, teacher = false): FeatureEncoder {
  const { net, state, from } = loadSslEncoder(path, teacher);
  return {
    name: `SSL encoder ${from}, mean-pooled ${net.config.encoder.dim}-d`,
    async encode(images: HostTensor): Promise<HostTensor> {
      const [n, c, h, w] = images.shape as [number, number, number, number];
      if (c !== net.config.encoder.channels || h !== net.config.encoder.imageSize || w !== h)
        throw new KilnError(`the SSL encoder takes [N, ${net.config.encoder.channels}, ${net.config.encoder.imageSize}, ${net.config.encoder.imageSize}] images, got [${images.shape.join(', ')}]`);
      const f = await encodeImages(backend, net, state, (x) => net.embed(x), Float32Array.from(images.data as ArrayLike<number>), [c, h, w], n, batch);
      return hostTensor('f32', [n, f.d], f.x);
    },
    dispose() { /* each encode opens and closes its own session */ },
  };
}

/** The FAE of the Fashion-MNIST preset on the SSL run's encoder, with the weights of `faePaths` (comma list, later ones win). */
export function loadFashionFae(encoderPath: string, faePaths: string, teacher = false, preset: 'fashionMnist' | 'fashionTiny' = 'fashionMnist'): { fae: FAE; state: Map<string, HostTensor> } {
  const { net, state: enc } = loadSslEncoder(encoderPath, teacher);
  const fae = new FAE(faeConfigs[preset](), net.encoder);
  const state = fae.initState(0);
  applyWeights(state, enc, encoderPath);
  for (const p of faePaths.split(',')) applyWeights(state, loadWeights(p, warn), p);
  return { fae, state };
}

function images01(n: number, split: 'train' | 'test'): { x: Float32Array; y: Int32Array } {
  const d = loadFashionMnist(split);
  const m = Math.min(n, d.count);
  return { x: Float32Array.from(d.images.subarray(0, m * 784), (v) => (v / 255 - 0.5) / 0.5), y: Int32Array.from(d.labels.subarray(0, m)) };
}

export function registerFaeEval(ev: Command): void {
  ev.command('fae')
    .description('FAE on Fashion-MNIST: reconstruction PSNR/SSIM, and the linear probe of reconstructed vs raw encoder features')
    .requiredOption('--encoder <dir>', '(required) the ssl-encoder run (the frozen encoder)')
    .requiredOption('--fae <list>', '(required) FAE checkpoints, comma-separated, later ones win (e.g. runs/fae-stage-ia,runs/fae-pixel-finetune)')
    .addOption(new Option('--preset <name>', 'the FAE config preset').choices(['fashionMnist', 'fashionTiny']).default('fashionMnist'))
    .option('--teacher', "the SSL run's EMA teacher as the encoder (as the FAE jobs were trained on it)", false)
    .option('--count <n>', 'test images', positiveInt, 10000)
    .option('--train-limit <n>', 'train images for the probes', positiveInt, 60000)
    .option('--epochs <n>', 'probe training epochs', positiveInt, 30)
    .option('--batch <n>', 'batch size', positiveInt, 500)
    .option('--grid <png>', 'write 16 test images (top) and their reconstructions (bottom) (default: none)')
    .addOption(backendOption('auto'))
    .option('--json', 'print one JSON line', false)
    .action(async (o: { encoder: string; fae: string; preset: 'fashionMnist' | 'fashionTiny'; teacher: boolean; count: number; trainLimit: number; epochs: number; batch: number; grid?: string; backend: string; json: boolean }) => {
      const { backend, reason } = await chooseBackend(o.backend);
      console.error(`backend: ${backend.name} (${reason})`);
      const t0 = performance.now();
      const { fae, state } = loadFashionFae(o.encoder, o.fae, o.teacher, o.preset);
      const shape: [number, number, number] = [1, 28, 28];
      const test = images01(o.count, 'test'), train = images01(o.trainLimit, 'train');
      const nte = test.y.length, ntr = train.y.length;
      const pooled = async (x: Float32Array, n: number, which: 'raw' | 'recon') => encodeImages(backend, fae, state, (im: Tensor) => {
        const f = fae.encoder.forward(im);
        return (which === 'raw' ? f : fae.feature_decoder.forward(fae.adapter.forward(f).mean)).mean(1);
      }, x, shape, n, o.batch);
      const raw = { train: await pooled(train.x, ntr, 'raw'), test: await pooled(test.x, nte, 'raw') };
      const rec = { train: await pooled(train.x, ntr, 'recon'), test: await pooled(test.x, nte, 'recon') };
      const set = (f: { x: Float32Array; d: number }, y: Int32Array) => ({ x: f.x, y, n: y.length, d: f.d });
      const probe = { epochs: o.epochs };
      const pRaw = await linearProbe(backend, set(raw.train, train.y), set(raw.test, test.y), 10, probe);
      const pRec = await linearProbe(backend, set(rec.train, train.y), set(rec.test, test.y), 10, probe);
      // reconstructions of the test images
      const B = Math.min(o.batch, nte);
      const g = trace('fae_reconstruct', (t) => {
        const f = fae.encoder.forward(t.input('images', [B, ...shape]));
        return { recon: fae.pixel_decoder.forward(fae.feature_decoder.forward(fae.adapter.forward(f).mean)) };
      }, { params: fae });
      const s = await Session.open(backend, g, state, { precision: 'f32' });
      const recon = new Float32Array(nte * 784);
      try {
        for (let i = 0; i < nte; i += B) {
          const m = Math.min(B, nte - i);
          const chunk = new Float32Array(B * 784);
          chunk.set(test.x.subarray(i * 784, (i + m) * 784));
          const r = (await s.run({ images: hostTensor('f32', [B, ...shape], chunk) })).recon!.data as Float32Array;
          recon.set(r.subarray(0, m * 784), i * 784);
        }
      } finally {
        s.dispose();
      }
      const clamp = Float32Array.from(recon, (v) => Math.min(1, Math.max(-1, v)));
      const a = hostTensor('f32', [nte, ...shape], test.x), b = hostTensor('f32', [nte, ...shape], clamp);
      const mp = mean(psnr(a, b, 2).filter(Number.isFinite)), ms = mean(ssim(a, b, { dataRange: 2 }));
      if (o.grid) {
        const k = Math.min(16, nte);
        const both = new Float32Array(2 * k * 784);
        both.set(test.x.subarray(0, k * 784));
        both.set(clamp.subarray(0, k * 784), k * 784);
        await writeImageGrid(o.grid, hostTensor('f32', [2 * k, ...shape], both), { columns: k, scale: 2, range: [-1, 1] });
      }
      const secs = (performance.now() - t0) / 1000;
      const r = { psnr: mp, ssim: ms, probe_raw: pRaw.testAccuracy, probe_reconstructed: pRec.testAccuracy, test: nte, train: ntr, seconds: secs };
      console.log(o.json ? JSON.stringify(r)
        : `FAE ${o.fae} on ${nte} test images: PSNR ${mp.toFixed(2)} dB, SSIM ${ms.toFixed(4)}; linear probe raw features ${(100 * pRaw.testAccuracy).toFixed(2)}%, reconstructed features ${(100 * pRec.testAccuracy).toFixed(2)}% (${ntr} train images, ${secs.toFixed(1)} s)`);
    });
}
