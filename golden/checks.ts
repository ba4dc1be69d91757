/**
 * @file The golden-output checks behind `kiln golden check`: every stored golden (golden/data/...) run on
 * a chosen backend, with every output's max error against its tolerance, the same as the test suite's:
 * - nn layers (golden/data/nn, test/nn/layers.test.ts): max |kiln − ref| ≤ 1e-5 · (1 + max |ref|),
 *   except `timestep_dit` (5e-5, see that test's comment);
 * - DINOv2 (and its bicubic resampling goldens, 1e-5 as in test/models/dinov2.test.ts), LightningDiT + flow matching, TarFlow/STARFlow, FAE (golden/modelCases.ts, the cases of
 *   test/models/compiled.test.ts): normwise max |kiln − ref| ≤ 1e-4 · max(max |ref|, floor), floor 0 for
 *   forward outputs and 0.01·(largest golden gradient of the case) for gradients;
 * - losses (golden/trainCases.ts, test/train/losses.test.ts): 1e-5 · max |ref|, loss and gradients;
 * - optimizers (test/train/optimizerGolden.test.ts): 10 training steps, per-step loss (and gradient norm),
 *   final parameters and EMA, each 1e-4 · max |ref|.
 * - Inception-v3 (golden/data/inception, test/models/inception.test.ts): conv (with gradients), pooling and
 *   bilinear resize layers 1e-5 · max |ref|, pool features of the width-÷8 network 1e-4 · max |ref|;
 * The DINOv2 ViT-B goldens (base, base_reg: ~100 s each on the kernel interpreter) are left to
 * test/models/dinov2.test.ts, and golden/data/safetensors_interop to test/runtime (a file-format check).
 * `dir` reads a copy of golden/data instead (a corrupted one, in the tests).
 * Regenerating them is GOLDEN_SCRIPTS (python3 golden/<script>.py, which needs torch; see README "Testing").
 */
import { join } from 'node:path';
import type { Backend } from '../backends/backend.ts';
import { crossEntropy, nn, trace } from '../compiler/dsl/index.ts';
import { grad } from '../compiler/transforms/grad.ts';
import { GRAD_NORM_OUTPUT, trainStep } from '../compiler/transforms/trainStep.ts';
import type { Graph } from '../ir/graph.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { loadInception, traceInceptionFeatures } from '../models/inception.ts';
import { MlpClassifier } from '../models/mlp.ts';
import { compileOn } from '../runtime/compile.ts';
import { loadSafetensors } from '../runtime/safetensors.ts';
import { Session } from '../runtime/session.ts';
import {
  type ModelCase, dinov2Case, interpCase, interpGolden, ditCase, faeDiscriminatorCase, faeStageIaCase, faeStageIbCase, flowMatchingCase, setModelGoldenDir, tarflowCase,
} from './modelCases.ts';
import { ROOT, goldenFiles, loadGolden, traceGolden } from './nnCases.ts';
import { LOSS_CASES, OPTIMIZER_CASES, lossProgram } from './trainCases.ts';

export { GOLDEN_SCRIPTS } from './scripts.ts';

export interface OutputCheck {
  output: string;
  maxErr: number;
  bound: number;
  ok: boolean;
}

export interface GoldenCheck {
  name: string;
  file: string;
  run(backend: Backend): Promise<OutputCheck[]>;
}

const TOL = 1e-5;
const TOL_OVERRIDE: Record<string, number> = { timestep_dit: 5e-5 };

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i])));
  return m;
}

export function compareOutput(name: string, got: HostTensor | undefined, ref: HostTensor, tol: number): OutputCheck {
  if (!got || got.shape.join(',') !== ref.shape.join(',')) return { output: name, maxErr: Infinity, bound: 0, ok: false };
  let err = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(Number(got.data[i]) - Number(ref.data[i]));
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  const bound = tol * (1 + maxAbs(ref.data));
  return { output: name, maxErr: err, bound, ok: err <= bound };
}

/** Normwise: max |got − ref| ≤ tol · max(max |ref|, floor) (shapes compared by element count: goldens store scalars as [1]). */
export function compareRelative(name: string, got: ArrayLike<number> | undefined, ref: ArrayLike<number>, tol: number, floor = 0): OutputCheck {
  const bound = tol * Math.max(maxAbs(ref), floor, 1e-30);
  if (!got || got.length !== ref.length) return { output: name, maxErr: Infinity, bound, ok: false };
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(Number(got[i]) - Number(ref[i]));
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  return { output: name, maxErr: err, bound, ok: err <= bound };
}

/** Compile `graph` on `backend`, write its non-data inputs from `feeds`, run it on the data ones. */
async function runOn(backend: Backend, graph: Graph, values: Record<string, HostTensor>, what: string): Promise<Record<string, HostTensor>> {
  const exe = await compileOn(backend, graph);
  try {
    const feeds: Record<string, HostTensor> = {};
    for (const i of graph.inputs) {
      const v = values[i.name];
      if (!v) throw new Error(`${what}: the golden has no value for input '${i.name}'`);
      if (i.kind === 'data') feeds[i.name] = v;
      else await exe.write(i.name, v);
    }
    return await exe.run(feeds);
  } finally {
    exe.dispose();
  }
}

function nnCheck(dataDir: string, file: string): GoldenCheck {
  const name = `nn/${file.replace(/\.safetensors$/, '')}`;
  return {
    name, file: join(dataDir, 'nn', file),
    async run(backend) {
      const g = loadGolden(file, join(dataDir, 'nn'));
      const { graph } = traceGolden(g);
      const got = await runOn(backend, graph, Object.fromEntries([...g.byPrefix('input.'), ...g.byPrefix('param.')]), name);
      const tol = TOL_OVERRIDE[g.name] ?? TOL;
      return [...g.byPrefix('output.')].map(([k, ref]) => compareOutput(k, got[k], ref, tol));
    },
  };
}

/** The model tolerance of test/models/compiled.test.ts. */
const MODEL_TOL = 1e-4;

function modelCheck(dataDir: string, name: string, file: string, make: () => ModelCase): GoldenCheck {
  return {
    name, file: join(dataDir, file),
    async run(backend) {
      setModelGoldenDir(dataDir);
      const c = make();
      const got = await runOn(backend, c.graph, c.feeds, name);
      return c.checks.map((ch) => compareRelative(ch.output, got[ch.output]?.data, ch.want.data, c.tol ?? MODEL_TOL, ch.floor));
    },
  };
}

/** The loss tolerance of test/train/losses.test.ts. */
const LOSS_TOL = 1e-5;

function lossCheck(dataDir: string, loss: string): GoldenCheck {
  const file = join(dataDir, 'losses.safetensors');
  return {
    name: `losses/${loss}`, file,
    async run(backend) {
      const golden = loadSafetensors(file).tensors;
      const { graph, feeds, floats } = lossProgram(loss, golden);
      const got = await runOn(backend, graph, feeds, `losses/${loss}`);
      const ref = (k: string) => {
        const v = golden.get(k);
        if (!v) throw new Error(`${file}: no tensor ${k}`);
        return v.data;
      };
      return [compareRelative('loss', got.loss?.data, ref(`${loss}.out`), LOSS_TOL), ...floats.map((a) => compareRelative(`grad.${a}`, got[`grad.${a}`]?.data, ref(`${loss}.grad.${a}`), LOSS_TOL))];
    },
  };
}

/** The optimizer tolerance of test/train/optimizerGolden.test.ts. */
const OPTIM_TOL = 1e-4;

function optimizerCheck(dataDir: string, c: (typeof OPTIMIZER_CASES)[number]): GoldenCheck {
  const file = join(dataDir, 'optim', `${c.file}.safetensors`);
  return {
    name: `optim/${c.file}`, file,
    async run(backend) {
      const t = loadSafetensors(file).tensors;
      const get = (k: string) => {
        const v = t.get(k);
        if (!v) throw new Error(`${file}: no tensor ${k}`);
        return v;
      };
      const [S, B, IN] = get('x').shape as [number, number, number];
      const model = new MlpClassifier({ inputs: IN, hidden: [8], classes: 3 });
      const fwd = trace('mlp', (tc) => ({ loss: crossEntropy(model.forward(tc.input('x', [B, IN])), tc.input('y', [B], 'i32')) }), { params: model });
      const step = trainStep(fwd, { loss: 'loss', optimizer: c.optimizer, clipGradNorm: c.clip, ema: c.ema === undefined ? undefined : { decay: c.ema } });
      const names = model.namedParameters().map(([n]) => n);
      const session = await Session.open(backend, step, new Map(names.map((n) => [n, get(`param.${n}`)] as [string, HostTensor])));
      try {
        const x = get('x').data, y = get('y').data, lr = get('lr').data;
        const losses: number[] = [], norms: number[] = [];
        for (let s = 0; s < S; s++) {
          const out = await session.run({
            x: hostTensor('f32', [B, IN], x.slice(s * B * IN, (s + 1) * B * IN)),
            y: hostTensor('i32', [B], y.slice(s * B, (s + 1) * B)),
            lr: hostTensor('f32', [], [lr[s]!]),
          });
          losses.push(Number(out.loss!.data[0]));
          if (c.clip !== undefined) norms.push(Number(out[GRAD_NORM_OUTPUT]!.data[0]));
        }
        // Per step, as the test does (each step's loss against its own size).
        const rows = losses.map((l, s) => compareRelative(`loss[${s}]`, [l], [get('loss').data[s]!], OPTIM_TOL));
        if (c.clip !== undefined) rows.push(...norms.map((g, s) => compareRelative(`grad_norm[${s}]`, [g], [get('grad_norm').data[s]!], OPTIM_TOL)));
        const state = await session.read();
        for (const n of names) {
          rows.push(compareRelative(`final.${n}`, state.get(n)?.data, get(`final.${n}`).data, OPTIM_TOL));
          if (c.ema !== undefined) rows.push(compareRelative(`ema.${n}`, state.get(`ema.${n}`)?.data, get(`ema.${n}`).data, OPTIM_TOL));
        }
        return rows;
      } finally {
        session.dispose();
      }
    },
  };
}

/** The tolerances of test/models/inception.test.ts. */
const INCEPTION_LAYER_TOL = 1e-5, INCEPTION_FEATURE_TOL = 1e-4;

function inceptionChecks(dataDir: string): GoldenCheck[] {
  const dir = join(dataDir, 'inception');
  const tensors = (f: string) => {
    const t = loadSafetensors(join(dir, f)).tensors;
    return (k: string) => {
      const v = t.get(k);
      if (!v) throw new Error(`${join(dir, f)}: no tensor ${k}`);
      return v;
    };
  };
  const features = async (backend: Backend, variant: 'fid' | 'torchvision', resize: number | null, images: HostTensor, what: string) => {
    const { model, weights } = loadInception(join(dir, 'w8.safetensors'), { variant, resize });
    const g = traceInceptionFeatures(model, { batch: images.shape[0]!, height: images.shape[2]!, width: images.shape[3]! });
    return (await runOn(backend, g, { ...Object.fromEntries(weights), images }, what)).features?.data;
  };
  return [
    {
      name: 'inception/layers', file: join(dir, 'cases.safetensors'),
      async run(backend) {
        const get = tensors('cases.safetensors');
        const x = get('ops.x'), r = get('ops.r');
        const conv = new nn.Conv2d(3, 4, [3, 2], { stride: [2, 1], padding: [1, 1] });
        const g = grad(trace('inception_layers', (t) => {
          const xi = t.input('x', [...x.shape]);
          const y = conv.forward(xi);
          return {
            conv: y, loss: y.mul(t.input('r', [...r.shape])).sum(), maxpool: nn.maxPool2d(xi, 3, 2, 1),
            avgpool_excl: nn.avgPool2d(xi, 3, 2, 1, { countIncludePad: false }), avgpool_incl: nn.avgPool2d(xi, [3, 2], 2, [1, 0]),
          };
        }, { params: conv }), { loss: 'loss', wrt: ['x', 'weight', 'bias'] });
        const got = await runOn(backend, g, { x, r, weight: get('ops.conv.weight'), bias: get('ops.conv.bias') }, 'inception/layers');
        const rows = ['conv', 'maxpool', 'avgpool_excl', 'avgpool_incl'].map((k) => compareRelative(k, got[k]?.data, get(`ops.${k}`).data, INCEPTION_LAYER_TOL));
        for (const k of ['x', 'weight', 'bias']) rows.push(compareRelative(`grad.${k}`, got[`grad.${k}`]?.data, get(`ops.grad.${k}`).data, INCEPTION_LAYER_TOL));
        for (const [src, key, h, w] of [['images32', 'resize_up', 47, 61], ['images80', 'resize_down', 57, 45]] as const) {
          const im = get(src);
          const y = await runOn(backend, trace('inception_resize', (t) => ({ y: nn.resizeBilinear(t.input('x', [...im.shape]), h, w) })), { x: im }, 'inception/layers');
          rows.push(compareRelative(key, y.y?.data, get(key).data, INCEPTION_LAYER_TOL));
        }
        return rows;
      },
    },
    {
      name: 'inception/features_fid80', file: join(dir, 'w8.safetensors'),
      async run(backend) {
        const get = tensors('cases.safetensors');
        return [compareRelative('features', await features(backend, 'fid', null, get('images80'), 'inception/features_fid80'), get('fid80').data, INCEPTION_FEATURE_TOL)];
      },
    },
    {
      name: 'inception/fid_sets', file: join(dir, 'fid_sets.safetensors'),
      async run(backend) {
        const get = tensors('fid_sets.safetensors');
        const real = get('real'), per = real.data.length / real.shape[0]!;
        const four: HostTensor = { ...real, shape: [4, ...real.shape.slice(1)], data: real.data.slice(0, 4 * per) } as HostTensor;
        const want = get('real_features').data.slice(0, 4 * 256);
        return [compareRelative('real_features[0:4]', await features(backend, 'fid', 75, four, 'inception/fid_sets'), want, INCEPTION_FEATURE_TOL)];
      },
    },
  ];
}

/** The case names of dinov2/interp.safetensors in `dataDir`. */
function interpNames(dataDir: string): string[] {
  setModelGoldenDir(dataDir);
  return interpGolden().cases.map((c) => c.name);
}

/** Every golden check, reading the goldens from `dataDir` (default: the repository's golden/data). */
export function goldenChecks(dataDir = join(ROOT, 'golden', 'data')): GoldenCheck[] {
  const m = (name: string, file: string, make: () => ModelCase) => modelCheck(dataDir, name, file, make);
  return [
    ...goldenFiles.map((f) => nnCheck(dataDir, f)),
    ...['run0', 'run1', 'run2', 'run3'].map((r) => m(`dinov2/tiny/${r}`, 'dinov2/tiny.io.safetensors', () => dinov2Case('tiny', r))),
    ...['run0', 'run1', 'run2'].map((r) => m(`dinov2/tiny_reg/${r}`, 'dinov2/tiny_reg.io.safetensors', () => dinov2Case('tiny_reg', r))),
    m('dinov2/tiny_swiglu/run0', 'dinov2/tiny_swiglu.io.safetensors', () => dinov2Case('tiny_swiglu', 'run0')),
    ...interpNames(dataDir).map((n) => m(`dinov2/interp/${n}`, 'dinov2/interp.safetensors', () => interpCase(n))),
    ...(['lightningdit_p1', 'lightningdit_p2_mixed', 'dit_p2'] as const).map((n) => m(`lightningdit/${n}`, `lightningdit/${n}.safetensors`, () => ditCase(n))),
    m('lightningdit/flow_matching', 'lightningdit/lightningdit_p1.safetensors', flowMatchingCase),
    ...(['tiny_uncond', 'tiny_cond_p2', 'tiny_starflow'] as const).map((n) => m(`tarflow/${n}`, `tarflow/${n}.safetensors`, () => tarflowCase(n))),
    m('fae/stage_ia', 'fae/tiny.safetensors', faeStageIaCase),
    m('fae/stage_ib', 'fae/tiny.safetensors', faeStageIbCase),
    m('fae/discriminator', 'fae/tiny.safetensors', faeDiscriminatorCase),
    ...Object.keys(LOSS_CASES).map((l) => lossCheck(dataDir, l)),
    ...OPTIMIZER_CASES.map((c) => optimizerCheck(dataDir, c)),
    ...inceptionChecks(dataDir),
  ];
}
