/**
 * @file The nn-layer gradient goldens (golden/nn_layers.py: loss = Σ_outputs sum(out · cotangent)) as
 * cases any backend runs, and the one comparison rule every backend's test applies: each parameter's
 * and input's gradient within `tol` normwise relative error of its own reference,
 * max|got − want| / max|want|; a reference below 1e-6 of the layer's largest gradient G is zero in
 * exact arithmetic (f32 rounding noise only: the key-norm bias of attention_lnqk_causal, which softmax
 * ignores, at 3e-8·G), and there the backend's gradient must be noise as well, max|got| ≤ 1e-6·G.
 */
import { grad } from '../../compiler/transforms/grad.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { maxAbs, relErr } from './compare.ts';
import { withCotangentLoss } from './compilerPrograms.ts';
import { goldenFiles, loadGolden, traceGolden } from './nnGoldens.ts';

/** Relative size below which a reference gradient counts as zero in exact arithmetic. */
export const ZERO_GRADIENT = 1e-6;

export interface LayerGradCase {
  readonly file: string;
  /** loss = Σ_outputs sum(out · cotangent), the cotangents as data inputs. */
  readonly lossGraph: Graph;
  /** The gradient program of lossGraph with respect to every parameter and input (outputs `grad.<name>`). */
  readonly gradGraph: Graph;
  readonly feeds: Record<string, HostTensor>;
  /** Parameters and inputs whose gradients the golden holds, in order. */
  readonly wrt: readonly string[];
  /** Reference gradient per name of `wrt`. */
  readonly want: ReadonlyMap<string, HostTensor>;
}

/** The golden files that hold gradients. */
export const layerGradFiles: readonly string[] = goldenFiles.filter((f) => loadGolden(f).byPrefix('cotangent.').size > 0);

export function layerGradCase(file: string): LayerGradCase {
  const gold = loadGolden(file);
  const cots = gold.byPrefix('cotangent.');
  const lossGraph = withCotangentLoss(traceGolden(gold).graph, [...cots.keys()]);
  const feeds: Record<string, HostTensor> = {};
  for (const [k, v] of gold.byPrefix('param.')) feeds[k] = v;
  for (const [k, v] of gold.byPrefix('input.')) feeds[k] = v;
  for (const [k, v] of cots) feeds[`cotangent.${k}`] = v;
  const want = new Map<string, HostTensor>([...gold.byPrefix('grad.'), ...gold.byPrefix('gradin.')]);
  const wrt = [...want.keys()];
  return { file, lossGraph, gradGraph: grad(lossGraph, { loss: 'loss', wrt }), feeds, wrt, want };
}

/** The gradients of `got` (outputs `grad.<name>`) that break the rule above, as lines of text. */
/**
 * `zeroTol`: how far from zero (in units of G, the case's largest gradient) a gradient that is zero in
 * exact arithmetic may come out (default ZERO_GRADIENT, for f32; low-precision runs pass their own).
 */
export function layerGradMismatches(c: LayerGradCase, got: Readonly<Record<string, HostTensor>>, tol: number, zeroTol = ZERO_GRADIENT): string[] {
  const G = Math.max(...[...c.want.values()].map((t) => maxAbs(t.data)));
  const bad: string[] = [];
  for (const [name, want] of c.want) {
    const g = got[`grad.${name}`];
    if (!g) {
      bad.push(`${c.file} grad.${name}: missing`);
      continue;
    }
    if (maxAbs(want.data) <= ZERO_GRADIENT * G) {
      const noise = maxAbs(g.data) / G;
      if (!(noise <= zeroTol)) bad.push(`${c.file} grad.${name}: zero in exact arithmetic, got ${noise.toExponential(2)}·G`);
    } else {
      const e = relErr(g.data, want.data);
      if (!(e <= tol)) bad.push(`${c.file} grad.${name}: ${e.toExponential(2)}`);
    }
  }
  return bad;
}
