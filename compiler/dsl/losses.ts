/**
 * @file Loss functions (PyTorch semantics, mean reduction unless stated): MSE, L1, cross-entropy
 * with integer labels, KL of a diagonal Gaussian to N(0, I), cosine-similarity loss.
 */
import { ShapeError } from '../../ir/errors.ts';
import { typeStr } from '../../ir/ops.ts';
import { callerLocation } from './loc.ts';
import type { Tensor } from './tensor.ts';

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i]))
    throw new ShapeError(op, [typeStr(a.type), typeStr(b.type)], 'prediction and target shapes differ', callerLocation());
}

export type Reduction = 'mean' | 'sum' | 'none';
function reduce(t: Tensor, r: Reduction): Tensor {
  return r === 'mean' ? t.mean() : r === 'sum' ? t.sum() : t;
}

/** Mean squared error. */
export function mseLoss(pred: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  sameShape('mse_loss', pred, target);
  return reduce(pred.sub(target).square(), reduction);
}

/** Mean absolute error. */
export function l1Loss(pred: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  sameShape('l1_loss', pred, target);
  return reduce(pred.sub(target).abs(), reduction);
}

/**
 * Cross-entropy of logits [..., C] (class axis last) against integer labels [...] (i32),
 * averaged over all label positions, as torch.nn.functional.cross_entropy with class axis moved last.
 * Optional label smoothing as in PyTorch.
 */
export function crossEntropy(logits: Tensor, labels: Tensor, opts: { labelSmoothing?: number; reduction?: Reduction } = {}): Tensor {
  const c = logits.shape[logits.rank - 1]!;
  if (labels.dtype !== 'i32' || labels.rank !== logits.rank - 1 || labels.shape.some((d, i) => d !== logits.shape[i]))
    throw new ShapeError('cross_entropy', [typeStr(logits.type), typeStr(labels.type)],
      'labels must be i32 with the logits shape minus the class axis', callerLocation());
  const logp = logits.logSoftmax(-1);
  const ls = opts.labelSmoothing ?? 0;
  let nll = logp.mul(labels.oneHot(c, logits.dtype)).sum(-1).neg();
  if (ls > 0) nll = nll.mul(1 - ls).sub(logp.mean(-1).mul(ls));
  return reduce(nll, opts.reduction ?? 'mean');
}

/** Fraction of positions where argmax(logits) equals the label (a metric; no gradient). */
export function accuracy(logits: Tensor, labels: Tensor): Tensor {
  return logits.argmax(-1).eq(labels).cast('f32').mean();
}

/**
 * KL(N(mean, exp(logvar)) || N(0, I)) = 0.5·Σ(mean² + exp(logvar) − 1 − logvar), summed over
 * all but the first (batch) axis and averaged over the batch (the VAE convention).
 */
export function klDiagonalGaussian(mean: Tensor, logvar: Tensor, reduction: 'batchmean' | 'sum' | 'mean' = 'batchmean'): Tensor {
  sameShape('kl_diagonal_gaussian', mean, logvar);
  const kl = mean.square().add(logvar.exp()).sub(1).sub(logvar).mul(0.5);
  if (reduction === 'mean') return kl.mean();
  if (reduction === 'sum') return kl.sum();
  return kl.sum().div(mean.shape[0] ?? 1);
}

/** 1 − cos(a, b) along `axis`, averaged over the remaining positions (cos with PyTorch's eps 1e-8). */
export function cosineSimilarityLoss(a: Tensor, b: Tensor, axis = -1, eps = 1e-8): Tensor {
  sameShape('cosine_similarity_loss', a, b);
  return cosineSimilarity(a, b, axis, eps).rsub(1).mean();
}

/**
 * torch.nn.functional.cosine_similarity as PyTorch computes it: a·b / (max(‖a‖, eps)·max(‖b‖, eps)).
 * The norms are sqrt(max(Σx², eps²)) (the same values), whose gradient at a zero vector is 0 rather
 * than NaN (sqrt's derivative at 0), as in PyTorch.
 */
export function cosineSimilarity(a: Tensor, b: Tensor, axis = -1, eps = 1e-8): Tensor {
  const na = a.square().sum(axis).maximum(eps * eps).sqrt();
  const nb = b.square().sum(axis).maximum(eps * eps).sqrt();
  return a.mul(b).sum(axis).div(na.mul(nb));
}
