/**
 * @file `kiln eval fd|accuracy|recon|bpd`: the evaluation metrics.
 * - fd: Fréchet distance between real and generated sets in the feature space of a frozen encoder
 *   (an HF DINOv2 checkpoint directory), or between given feature sets; a fixed sample count N from each
 *   set, and the real-vs-real floor (real[0:N] against real[N:2N]) when the real set has 2N items.
 * - accuracy: a classifier checkpoint (an MLP: layers.<i>.weight/bias, e.g. a `kiln train fashion-mlp`
 *   run) on class-conditional samples: the share whose predicted class is the class they were sampled for.
 * - recon: PSNR and SSIM (runtime/eval/imageMetrics.ts) of reconstructions against references.
 * - bpd: a TarFlow's bits per dimension on a data set (8-bit bins of [−1, 1] by default).
 * - fid: the same statistic (runtime/eval/frechet.ts) in Inception-v3 pool space, weights from a file
 *   (cli/inceptionEncoder.ts, models/inception/*.ts).
 * - probe: linear-probe / kNN accuracy of an SSL encoder, or of raw pixels (cli/commands/evalProbe.ts).
 * - fae: an FAE's reconstruction PSNR/SSIM and the probe of its reconstructed features (cli/commands/evalFae.ts).
 * fd also takes `--ssl-encoder <run>`: the in-project SSL encoder's feature space.
 */
import { type Command, Option } from 'commander';
import { trace } from '../../compiler/dsl/index.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { MlpClassifier } from '../../models/mlp.ts';
import { TarFlow } from '../../models/tarflow/model.ts';
import { forwardGraph } from '../../models/tarflow/graphs.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { featureStats, frechetDistance } from '../../runtime/eval/frechet.ts';
import { mean, psnr, ssim } from '../../runtime/eval/imageMetrics.ts';
import { Session } from '../../runtime/session.ts';
import { buildGenerator, checkWeights, generatorSpec, loadGeneratorWeights } from '../generators.ts';
import { type FeatureEncoder, type ImageSet, count, dinov2Encoder, loadSet, rows } from '../evalInputs.ts';
import { inceptionEncoder } from '../inceptionEncoder.ts';
import type { Precision } from '../../runtime/compile.ts';
import { backendOption, num, positiveInt } from '../options.ts';
import { registerFaeEval, sslFeatureEncoder } from './evalFae.ts';
import { registerProbe } from './evalProbe.ts';

function pair(v: string, what: string): [number, number] {
  const p = v.split(',').map(Number);
  if (p.length !== 2 || p.some((x) => !Number.isFinite(x)) || p[0]! >= p[1]!) throw new KilnError(`${what}: '${v}' is not lo,hi with lo < hi`);
  return [p[0]!, p[1]!];
}
const warn = (s: string) => console.error(`warning: ${s}`);
const report = (o: { json?: boolean }, r: Record<string, unknown>, text: string) => console.log(o.json ? JSON.stringify(r) : text);

export function register(program: Command): void {
  const ev = program.command('eval').description('evaluate: Fréchet distance, classifier accuracy on samples, PSNR/SSIM, bits per dimension, SSL linear probe / kNN');
  registerProbe(ev);
  registerFaeEval(ev);

  ev.command('fd')
    .description('Fréchet distance between real and generated images in a frozen encoder\'s feature space (with the real-vs-real floor)')
    .requiredOption('--real <set>', '(required) real images: a .safetensors file (images [N, C, H, W] or features [N, D]) or fashion-mnist[:test|train]')
    .requiredOption('--fake <set>', '(required) generated images: a .safetensors file as `kiln sample --save-samples` writes (images), or features [N, D]')
    .option('--encoder <dir>', 'frozen encoder: an HF DINOv2 checkpoint directory (config.json + model.safetensors); its CLS token is the feature (default: none: the files must hold features)')
    .option('--ssl-encoder <dir>', 'frozen encoder: a `kiln train ssl-encoder` run; its mean-pooled tokens are the feature (default: none)')
    .option('--count <n>', 'samples N taken from each set (the real set needs 2N for the floor)', positiveInt, 1000)
    .option('--encoder-size <px>', "image side fed to the encoder (nearest resize) (default: the smallest multiple of its patch size >= the images')", positiveInt)
    .option('--range <lo,hi>', 'value range of the images (mapped to [0, 1] for the encoder)', '-1,1')
    .option('--batch <n>', 'encoder batch size', positiveInt, 32)
    .addOption(backendOption('auto'))
    .option('--json', 'print one JSON line', false)
    .action(async (o: { real: string; fake: string; encoder?: string; sslEncoder?: string; count: number; encoderSize?: number; range: string; batch: number; backend: string; json: boolean }) => {
      const range = pair(o.range, '--range');
      let encoder: FeatureEncoder | undefined;
      if (o.encoder || o.sslEncoder) {
        const { backend, reason } = await chooseBackend(o.backend);
        console.error(`backend: ${backend.name} (${reason})`);
        if (o.sslEncoder && (range[0] !== -1 || range[1] !== 1)) throw new KilnError('--ssl-encoder takes images in [-1, 1] (--range -1,1)');
        encoder = o.sslEncoder ? sslFeatureEncoder(o.sslEncoder, backend, o.batch) : await dinov2Encoder(o.encoder!, backend, o.batch, range, o.encoderSize);
      }
      await frechetReport(o, encoder);
    });

  registerFid(ev);

  ev.command('accuracy')
    .description('accuracy of a classifier on class-conditional samples (the share classified as the class they were sampled for)')
    .requiredOption('--classifier <checkpoint>', '(required) an MLP classifier checkpoint (run directory, checkpoint directory or .safetensors; layers.<i>.weight/bias)')
    .requiredOption('--samples <set>', '(required) labelled images: a .safetensors file with images and labels (kiln sample --save-samples), or fashion-mnist[:test|train]')
    .option('--count <n>', 'evaluate the first N (default: all)', positiveInt)
    .option('--batch <n>', 'classifier batch size', positiveInt, 64)
    .addOption(backendOption('auto'))
    .option('--json', 'print one JSON line', false)
    .action(async (o: { classifier: string; samples: string; count?: number; batch: number; backend: string; json: boolean }) => {
      const w = loadGeneratorWeights(o.classifier, warn).model;
      const hidden: number[] = [];
      let inputs = 0, classes = 0;
      for (let i = 0; w.has(`layers.${i}.weight`); i++) {
        const [out, inp] = w.get(`layers.${i}.weight`)!.shape as [number, number];
        if (i === 0) inputs = inp;
        hidden.push(out);
      }
      if (!hidden.length) throw new KilnError(`${o.classifier}: not an MLP classifier (no layers.0.weight)`);
      classes = hidden.pop()!;
      const model = new MlpClassifier({ inputs, hidden, classes });
      checkWeights(model.namedParameters(), w, o.classifier);
      const set = loadSet(o.samples, o.count);
      if (!set.images || !set.labels) throw new KilnError(`${o.samples}: needs images and labels`);
      const N = count(set), per = set.images.data.length / N;
      if (per !== inputs) throw new KilnError(`${o.samples}: images of ${per} values, the classifier takes ${inputs}`);
      const { backend, reason } = await chooseBackend(o.backend);
      console.error(`backend: ${backend.name} (${reason})`);
      const B = o.batch;
      const g = trace('classify', (t) => ({ logits: model.forward(t.input('x', [B, inputs])) }), { params: model });
      const s = await Session.open(backend, g, w);
      let correct = 0;
      const perClass = new Map<number, [number, number]>();
      try {
        for (let b0 = 0; b0 < N; b0 += B) {
          const m = Math.min(B, N - b0);
          const x = new Float32Array(B * inputs);
          x.set(Float32Array.from(set.images.data.subarray(b0 * inputs, (b0 + m) * inputs) as ArrayLike<number>));
          const logits = (await s.run({ x: hostTensor('f32', [B, inputs], x) }, ['logits'])).logits!.data;
          for (let i = 0; i < m; i++) {
            let best = 0;
            for (let k = 1; k < classes; k++) if (Number(logits[i * classes + k]) > Number(logits[i * classes + best])) best = k;
            const want = Number(set.labels.data[b0 + i]);
            const pc = perClass.get(want) ?? [0, 0];
            pc[1]++;
            if (best === want) { correct++; pc[0]++; }
            perClass.set(want, pc);
          }
        }
      } finally {
        s.dispose();
      }
      const acc = correct / N;
      const pcs = [...perClass.entries()].sort((a, b) => a[0] - b[0]);
      report(o, { accuracy: acc, count: N, perClass: Object.fromEntries(pcs.map(([k, [c, t]]) => [k, c / t])) },
        `accuracy ${(100 * acc).toFixed(2)}% (${correct}/${N}); per class ${pcs.map(([k, [c, t]]) => `${k}: ${(100 * c / t).toFixed(0)}%`).join(', ')}`);
    });

  ev.command('recon')
    .description('PSNR and SSIM (11×11 Gaussian window, σ 1.5) of reconstructions against reference images')
    .requiredOption('--reference <set>', '(required) reference images: a .safetensors file (images) or fashion-mnist[:test|train]')
    .requiredOption('--reconstruction <set>', '(required) reconstructed images of the same shape, a .safetensors file')
    .option('--tensor <name>', "the reconstruction file's tensor (default: images, else samples)")
    .option('--count <n>', 'the first N images (default: all)', positiveInt)
    .option('--range <lo,hi>', 'value range of the images (its width is the data range L)', '-1,1')
    .option('--json', 'print one JSON line', false)
    .action(async (o: { reference: string; reconstruction: string; tensor?: string; count?: number; range: string; json: boolean }) => {
      const [lo, hi] = pair(o.range, '--range');
      const a = loadSet(o.reference, o.count).images, b = loadSet(o.reconstruction, o.count, o.tensor).images;
      if (!a || !b) throw new KilnError('recon: both sets need images');
      const p = psnr(a, b, hi - lo), s = ssim(a, b, { dataRange: hi - lo });
      const finite = p.filter(Number.isFinite);
      const mp = finite.length ? mean(finite) : Infinity;
      report(o, { psnr: mp, ssim: mean(s), count: p.length, identical: p.length - finite.length },
        `PSNR ${mp.toFixed(3)} dB, SSIM ${mean(s).toFixed(5)} over ${p.length} images${finite.length < p.length ? ` (${p.length - finite.length} identical: PSNR ∞, left out of the mean)` : ''}`);
    });

  ev.command('bpd')
    .description('bits per dimension of a TarFlow/STARFlow on a data set')
    .argument('<checkpoint>', 'a TarFlow run directory, checkpoint directory or .safetensors file')
    .requiredOption('--data <set>', '(required) images in the flow\'s input space: a .safetensors file (images [N, C, S, S], labels) or fashion-mnist[:test|train]')
    .option('--model <json|file>', '{"kind": "tarflow", "config": {...}} (default: from the checkpoint\'s job config)')
    .addOption(new Option('--weights <which>', 'EMA or raw model weights (EMA falls back to model)').choices(['ema', 'model']).default('ema'))
    .option('--bin-width <d>', 'quantization bin width in the input space (8-bit data in [−1, 1]: 2/256 = 0.0078125; 0 = continuous nats→bits only)', num, 2 / 256)
    .option('--data-scale <s>', 'model input = s · data', num, 1)
    .option('--count <n>', 'the first N items (default: all)', positiveInt)
    .option('--batch <n>', 'batch size', positiveInt, 32)
    .addOption(backendOption('auto'))
    .option('--json', 'print one JSON line', false)
    .action(async (path: string, o: { data: string; model?: string; weights: string; binWidth: number; dataScale: number; count?: number; batch: number; backend: string; json: boolean }) => {
      const w = loadGeneratorWeights(path, warn);
      const gen = buildGenerator(generatorSpec(o.model, w.meta, w.from));
      if (gen.kind !== 'tarflow') throw new KilnError(`${path}: bits per dimension needs a TarFlow, this is a ${gen.kind}`);
      const flow: TarFlow = gen.model;
      const weights = o.weights === 'ema' && w.ema.size ? w.ema : w.model;
      checkWeights(flow.namedParameters(), weights, w.from);
      const params = flow.initState(0);
      for (const [k, v] of weights) if (params.has(k)) params.set(k, v);
      const set = loadSet(o.data, o.count);
      if (!set.images) throw new KilnError(`${o.data}: no images`);
      const { inChannels: C, imgSize: S, numClasses } = flow.cfg;
      if (set.images.shape.slice(1).join() !== [C, S, S].join()) throw new KilnError(`${o.data}: images [${set.images.shape.join(', ')}], the flow takes [N, ${C}, ${S}, ${S}]`);
      const { backend, reason } = await chooseBackend(o.backend);
      console.error(`backend: ${backend.name} (${reason})`);
      const B = o.batch, N = count(set), per = C * S * S;
      const s = await Session.open(backend, forwardGraph(flow, { batch: B, bpd: { binWidth: o.binWidth > 0 ? o.binWidth : 1, dataScale: o.dataScale } }), params);
      let total = 0;
      try {
        for (let b0 = 0; b0 < N; b0 += B) {
          const m = Math.min(B, N - b0);
          const x = new Float32Array(B * per);
          x.set(Float32Array.from(set.images.data.subarray(b0 * per, (b0 + m) * per) as ArrayLike<number>));
          const feeds: Record<string, HostTensor> = { x: hostTensor('f32', [B, C, S, S], x) };
          if (numClasses > 0) {
            const y = new Int32Array(B).fill(-1);
            if (set.labels) y.set(Int32Array.from(set.labels.data.subarray(b0, b0 + m) as ArrayLike<number>));
            feeds.y = hostTensor('i32', [B], y);
          }
          const bpd = (await s.run(feeds, ['bpd'])).bpd!.data;
          for (let i = 0; i < m; i++) total += Number(bpd[i]);
        }
      } finally {
        s.dispose();
      }
      report(o, { bpd: total / N, count: N }, `bits per dimension ${(total / N).toFixed(4)} over ${N} items (bin width ${o.binWidth}, data scale ${o.dataScale})`);
    });
}

/**
 * The Fréchet distance of `kiln eval fd` and `kiln eval fid`:
 * N = --count items of each set, the features from `encoder` (or the files' `features`), and the
 * real-vs-real floor (real[0:N] against real[N:2N]) when the real set has 2N items.
 */
async function frechetReport(o: { real: string; fake: string; count: number; json?: boolean }, encoder: FeatureEncoder | undefined): Promise<void> {
  const n = o.count;
  const real = loadSet(o.real, 2 * n), fake = loadSet(o.fake, n);
  if (count(fake) < n) throw new KilnError(`${o.fake}: ${count(fake)} samples, --count is ${n}`);
  if (count(real) < n) throw new KilnError(`${o.real}: ${count(real)} samples, --count is ${n}`);
  const features = async (s: ImageSet): Promise<HostTensor> => {
    if (encoder) {
      if (!s.images) throw new KilnError(`${s.from}: no images to encode`);
      return encoder.encode(s.images);
    }
    if (!s.features) throw new KilnError(`${s.from}: no 'features' tensor; give --encoder <dir> to compute features from its images`);
    return s.features;
  };
  const space = encoder?.name ?? 'given features';
  try {
    const fr = await features(real), ff = await features(fake);
    const d = fr.shape[1]!;
    if (ff.shape[1] !== d) throw new KilnError(`feature sizes differ: ${o.real} ${d}, ${o.fake} ${ff.shape[1]}`);
    const st = (t: HostTensor, a: number, b: number) => featureStats(rows(t, a, b).data, b - a, d);
    const r0 = st(fr, 0, n);
    const fd = frechetDistance(r0, st(ff, 0, n));
    const floor = fr.shape[0]! >= 2 * n ? frechetDistance(r0, st(fr, n, 2 * n)) : undefined;
    if (floor === undefined) warn(`${o.real} has ${fr.shape[0]} samples, fewer than 2·${n}: no real-vs-real floor`);
    report(o, { fd, floor: floor ?? null, count: n, dim: d, space },
      `Fréchet distance ${fd.toFixed(4)} (N = ${n}, ${d}-d, ${space})${floor !== undefined ? `; real-vs-real floor ${floor.toFixed(4)}` : ''}`);
  } finally {
    encoder?.dispose();
  }
}

/** `kiln eval fid`: FID proper, the Fréchet distance in Inception-v3 pool space (weights from a file). */
function registerFid(ev: Command): void {
  ev.command('fid')
    .description('FID: the Fréchet distance in Inception-v3 pool-feature space (weights given as a safetensors file, no download), with the real-vs-real floor')
    .requiredOption('--inception <file>', "(required) Inception-v3 weights: a .safetensors state_dict with torchvision's keys (pytorch-fid's pt_inception-2015-12-05 converted, or torchvision's inception_v3)")
    .requiredOption('--real <set>', '(required) real images: a .safetensors file (images [N, C, H, W]) or fashion-mnist[:test|train]')
    .requiredOption('--fake <set>', '(required) generated images: a .safetensors file as `kiln sample --save-samples` writes')
    .addOption(new Option('--variant <v>', "'fid': pytorch-fid's FID network (TensorFlow pooling); 'torchvision': torchvision's inception_v3").choices(['fid', 'torchvision']).default('fid'))
    .option('--count <n>', 'samples N taken from each set (the real set needs 2N for the floor; FID is biased by N: compare values at the same N)', positiveInt, 1000)
    .option('--resize <px>', 'side the images are bilinearly resized to before the network (pytorch-fid: 299; at least 75)', positiveInt, 299)
    .option('--range <lo,hi>', 'value range of the images (mapped to [0, 1]; one channel is repeated to three)', '-1,1')
    .option('--batch <n>', 'Inception batch size', positiveInt, 16)
    .addOption(new Option('--precision <p>', 'compute precision of the network').choices(['f32', 'bf16', 'f16']).default('f32'))
    .addOption(backendOption('auto'))
    .option('--json', 'print one JSON line', false)
    .action(async (o: { inception: string; real: string; fake: string; variant: 'fid' | 'torchvision'; count: number; resize: number; range: string; batch: number; precision: Precision; backend: string; json: boolean }) => {
      const range = pair(o.range, '--range');
      const { backend, reason } = await chooseBackend(o.backend);
      console.error(`backend: ${backend.name} (${reason})`);
      const encoder = inceptionEncoder(o.inception, backend, { variant: o.variant, resize: o.resize, batch: o.batch, range, precision: o.precision });
      await frechetReport(o, encoder);
    });
}
