/**
 * @file Each rank's shard of the data: a source of per-rank batches (batch size = global / ranks)
 * whose batch b of epoch e is the rank's slice of global batch b of epoch e. With a source whose
 * epoch order depends only on seed and epoch (runtime/data: every shipped source), per-rank batch
 * b·W + r holds the examples [r·B/W, (r+1)·B/W) of global batch b, so the W ranks together see
 * exactly the global batches a single process with batch B sees, in the same order (the epoch's last
 * partial global batch is dropped, as it is there).
 */
import { KilnError } from '../../ir/errors.ts';
import type { BatchSource, SourceBatch } from '../data/source.ts';

/** Rank `rank`'s shard of `perRank` (a source built with the per-rank batch size). */
export function shardSource(perRank: BatchSource, rank: number, worldSize: number): BatchSource {
  const batchesPerEpoch = Math.floor(perRank.batchesPerEpoch / worldSize);
  if (batchesPerEpoch < 1) throw new KilnError(`data parallelism: an epoch has ${perRank.batchesPerEpoch} batches of ${perRank.batchSize}, fewer than the ${worldSize} ranks need for one global batch`);
  return {
    batchesPerEpoch,
    batchSize: perRank.batchSize,
    imageShape: perRank.imageShape,
    classes: perRank.classes,
    prefetchDepth: perRank.prefetchDepth,
    async load(epoch: number, batch: number): Promise<SourceBatch> {
      const b = await perRank.load(epoch, batch * worldSize + rank);
      return { ...b, batch };
    },
    close: perRank.close ? () => perRank.close!() : undefined,
  };
}

/** The per-rank batch of a global batch (a clear error when it does not divide). */
export function perRankBatch(globalBatch: number, worldSize: number): number {
  if (globalBatch % worldSize !== 0) throw new KilnError(`data parallelism: the global batch ${globalBatch} is not a multiple of the ${worldSize} ranks (set batchSize to a multiple of ${worldSize})`);
  return globalBatch / worldSize;
}
