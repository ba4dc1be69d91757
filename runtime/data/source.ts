/**
 * @file What the trainer reads data from: a BatchSource gives batch b of epoch e on request (random
 * access, so a resumed run asks for exactly the batch an uninterrupted one would have seen, and a
 * prefetcher can prepare batches ahead). Images are f32 NCHW (or flattened), labels i32.
 */
import type { HostTensor } from '../../ir/tensor.ts';

export interface SourceBatch {
  /** f32 images [B, C, H, W] (or [B, C·H·W] with the flat layout). */
  readonly x: HostTensor;
  /** i32 class labels [B]. */
  readonly y: HostTensor;
  readonly epoch: number;
  readonly batch: number;
}

export interface BatchSource {
  /** Full batches per epoch (the last partial batch of an epoch is dropped: shapes are static). */
  readonly batchesPerEpoch: number;
  readonly batchSize: number;
  /** [C, H, W] of one image. */
  readonly imageShape: readonly [number, number, number];
  readonly classes: readonly string[];
  /** Batches worth preparing ahead (the prefetcher's default depth where set; image folders: as many as
   * fit in 256 MiB, so decoding gets ahead while the step compiles and through epoch 1). */
  readonly prefetchDepth?: number;
  load(epoch: number, batch: number): Promise<SourceBatch>;
  /** Release what the source holds (decode workers); a later load may start them again. */
  close?(): Promise<void>;
}

/** Pixel normalization of values in [0, 1]: (v − mean[c]) / std[c] (one value = every channel). */
export interface Normalization {
  mean: number | readonly number[];
  std: number | readonly number[];
}

export function channelStats(n: Normalization | undefined, channels: number): { mean: Float32Array; std: Float32Array } {
  const pick = (v: number | readonly number[] | undefined, dflt: number, what: string) =>
    Float32Array.from({ length: channels }, (_, c) => {
      if (v === undefined) return dflt;
      if (typeof v === 'number') return v;
      if (v.length !== channels && v.length !== 1) throw new Error(`normalize.${what} has ${v.length} values for ${channels} channels`);
      return v.length === 1 ? v[0]! : v[c]!;
    });
  return { mean: pick(n?.mean, 0, 'mean'), std: pick(n?.std, 1, 'std') };
}

/** A 32-bit hash of integers (for per-example random choices that depend only on seed, epoch, index). */
export function hashInts(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x01000193) >>> 0;
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d) >>> 0;
    h ^= h >>> 12;
  }
  return h >>> 0;
}
