/**
 * @file A prefetching loader: while the trainer runs step s, batches s+1 … s+depth are already being
 * prepared (depth: the source's prefetchDepth, else 4) (image folders decode in worker threads, decodePool.ts; synchronous sources are started
 * on the next turn of the event loop). `close()` stops the source's workers when training ends. `next()` reports how long the trainer waited for the batch,
 * which the trainer logs as data time next to step time: when data time is ~0 the device never waits.
 */
import type { BatchSource, SourceBatch } from './source.ts';

export interface Position {
  epoch: number;
  batch: number;
}

/** Batches prepared ahead of the trainer by default (unless the source sets its own prefetchDepth). */
export const PREFETCH_DEPTH = 4;

export class Prefetcher {
  private readonly queue: Array<Promise<SourceBatch>> = [];
  private pos: Position;

  constructor(private readonly source: BatchSource, start: Position, depth = source.prefetchDepth ?? PREFETCH_DEPTH) {
    this.pos = { ...start };
    for (let i = 0; i < depth; i++) this.enqueue();
  }

  private enqueue(): void {
    const { epoch, batch } = this.pos;
    const p = new Promise<void>((r) => setImmediate(r)).then(() => this.source.load(epoch, batch));
    p.catch(() => {}); // surfaced by next()
    this.queue.push(p);
    this.pos = batch + 1 >= this.source.batchesPerEpoch ? { epoch: epoch + 1, batch: 0 } : { epoch, batch: batch + 1 };
  }

  /** The next batch in order and the milliseconds spent waiting for it. */
  async next(): Promise<{ batch: SourceBatch; waitMs: number }> {
    const t0 = performance.now();
    const p = this.queue.shift()!;
    this.enqueue();
    const batch = await p;
    return { batch, waitMs: performance.now() - t0 };
  }

  /** Stop preparing batches: the source's workers are stopped (batches still in flight are dropped). */
  async close(): Promise<void> {
    this.queue.length = 0;
    await this.source.close?.();
  }
}
