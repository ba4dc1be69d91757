/**
 * @file The nn-layer golden cases (golden/nn_layers.py → golden/data/nn/*.safetensors): loading them and
 * building the matching Kiln layer for each, shared by the forward tests (test/nn) and the gradient
 * tests (test/autodiff).
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Module, type Tensor, type TraceContext, trace } from '../compiler/dsl/index.ts';
import {
  AdaLNModulation,
  Attention,
  LabelEmbedder,
  LayerNorm,
  Linear,
  Mlp,
  PatchEmbed,
  type QKNorm,
  RMSNorm,
  SwiGLUFFN,
  TimestepEmbedder,
  VisionRotaryEmbeddingFast,
  modulate,
  sincos1dConstant,
  sincos2dConstant,
  timestepEmbedding,
  unpatchify,
} from '../compiler/dsl/nn/index.ts';
import type { Graph } from '../ir/graph.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { loadSafetensors } from '../runtime/safetensors.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DIR = join(ROOT, 'golden', 'data', 'nn');

/** A golden's config (JSON written by golden/nn_layers.py). */
export type Config = Record<string, any>;

export interface Golden {
  name: string;
  layer: string;
  config: Config;
  paramOrder: string[];
  byPrefix: (prefix: string) => Map<string, HostTensor>;
  tensors: Map<string, HostTensor>;
}

/** Load nn golden `file` from `dir` (default: golden/data/nn). */
export function loadGolden(file: string, dir = DIR): Golden {
  const { tensors, metadata } = loadSafetensors(join(dir, file));
  const byPrefix = (prefix: string) =>
    new Map([...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  const info = JSON.parse(metadata.golden!) as { layer: string; config: Config; param_order: string[] };
  return {
    name: file.replace(/\.safetensors$/, ''),
    layer: info.layer,
    config: info.config,
    paramOrder: info.param_order,
    byPrefix,
    tensors,
  };
}

/** A Kiln layer under test: its module (if it has parameters) and its traced forward. */
export interface Built {
  module?: Module;
  run: (inputs: Record<string, Tensor>) => Record<string, Tensor>;
}

/** Wraps a module under a property name (as a DiT block holds `adaLN_modulation`). */
export class Holder<M extends Module> extends Module {
  constructor(readonly adaLN_modulation: M) {
    super();
  }
}

function ropeFrom(cfg: Config | null): VisionRotaryEmbeddingFast | undefined {
  if (!cfg) return undefined;
  return new VisionRotaryEmbeddingFast(cfg.dim, { ptSeqLen: cfg.pt_seq_len, ftSeqLen: cfg.ft_seq_len ?? undefined, theta: cfg.theta });
}

export const builders: Record<string, (c: Config) => Built> = {
  linear: (c) => {
    const m = new Linear(c.in, c.out, { bias: c.bias });
    return { module: m, run: ({ x }) => ({ out: m.forward(x!) }) };
  },
  layernorm: (c) => {
    const m = new LayerNorm(c.dim, { eps: c.eps, affine: c.affine });
    return { module: m, run: ({ x }) => ({ out: m.forward(x!) }) };
  },
  rmsnorm: (c) => {
    const m = new RMSNorm(c.dim, { eps: c.eps });
    return { module: m, run: ({ x }) => ({ out: m.forward(x!) }) };
  },
  rope: (c) => {
    const r = ropeFrom(c)!;
    return { run: ({ x }) => ({ out: r.forward(x!), freqs_cos: r.constants().cos, freqs_sin: r.constants().sin }) };
  },
  attention: (c) => {
    const m = new Attention(c.dim, { numHeads: c.num_heads, qkvBias: c.qkv_bias, qkNorm: c.qk_norm as QKNorm, causal: c.causal });
    const rope = ropeFrom(c.rope);
    return { module: m, run: ({ x }) => ({ out: m.forward(x!, rope) }) };
  },
  mlp: (c) => {
    const m = new Mlp(c.in, { hidden: c.hidden, out: c.out ?? undefined, act: c.act, bias: c.bias });
    return { module: m, run: ({ x }) => ({ out: m.forward(x!) }) };
  },
  swiglu: (c) => {
    const m = new SwiGLUFFN(c.in, c.hidden, { out: c.out ?? undefined, bias: c.bias, names: c.names });
    return { module: m, run: ({ x }) => ({ out: m.forward(x!) }) };
  },
  patch_embed: (c) => {
    const m = new PatchEmbed(c.in_chans, c.embed_dim, c.patch_size, { bias: c.bias });
    return { module: m, run: ({ x }) => ({ out: m.forward(x!) }) };
  },
  unpatchify: (c) => ({ run: ({ x }) => ({ out: unpatchify(x!, c.patch_size, c.channels) }) }),
  sincos2d: (c) => ({ run: () => ({ out: sincos2dConstant(c.embed_dim, c.grid_size) }) }),
  sincos1d: (c) => ({ run: () => ({ out: sincos1dConstant(c.embed_dim, c.pos) }) }),
  timestep: (c) => {
    const m = new TimestepEmbedder(c.hidden, { frequencyEmbeddingSize: c.frequency_embedding_size, maxPeriod: c.max_period });
    return {
      module: m,
      run: ({ t }) => ({ out: m.forward(t!), t_freq: timestepEmbedding(t!, c.frequency_embedding_size, c.max_period) }),
    };
  },
  label: (c) => {
    const m = new LabelEmbedder(c.num_classes, c.hidden, c.dropout_prob);
    return { module: m, run: ({ labels, force_drop_ids }) => ({ out: m.forward(labels!, { train: false, forceDrop: force_drop_ids }) }) };
  },
  adaln: (c) => {
    const m = new Holder(new AdaLNModulation(c.cond_dim, c.dim, c.n));
    return {
      module: m,
      run: ({ x, c: cond }) => {
        const chunks = m.adaLN_modulation.forward(cond!);
        const out: Record<string, Tensor> = {};
        chunks.forEach((t, j) => (out[`chunk${j}`] = t));
        out.modulated = c.shift ? modulate(x!, chunks[0], chunks[1]!) : modulate(x!, undefined, chunks[0]!);
        return out;
      },
    };
  },
};


export const goldenFiles = readdirSync(DIR).filter((f) => f.endsWith('.safetensors')).sort();

/** Trace golden `g`'s layer with its inputs as graph inputs (dtype and shape from the file). */
export function traceGolden(g: Golden): { graph: Graph; build: Built } {
  const build = builders[g.layer]!(g.config);
  const inputs = g.byPrefix('input.');
  const graph = trace(
    g.name,
    (t: TraceContext) => {
      const ins: Record<string, Tensor> = {};
      for (const [k, v] of inputs) ins[k] = t.input(k, v.shape, v.dtype);
      return build.run(ins);
    },
    build.module ? { params: build.module } : {},
  );
  return { graph, build };
}
