/**
 * @file The collective operations data-parallel training uses, over the ranks of one job (types only):
 * all-reduce (sum or mean) of a buffer, broadcast from a root, barrier. A buffer is whatever the
 * transport reduces: device memory for NCCL (backends/cuda/nccl.ts NcclCollective: a device address,
 * element count and dtype, on the executable's stream), host memory for the TCP transport
 * (runtime/parallel/tcpGroup.ts: Float32Arrays, which is the CPU backend's device memory), so the same
 * training code runs N processes on the CPU backend in tests and N GPUs with NCCL.
 *
 * Every rank calls the same operations in the same order. A transport fails every pending and later
 * operation, on every rank, with one clear error when a rank dies, leaves or does not answer within
 * the job's timeout (no hang); `onFailure` hears it even between operations.
 */

export type ReduceOp = 'sum' | 'mean';

export interface Collective<B> {
  readonly rank: number;
  readonly worldSize: number;
  /** 'nccl' or 'tcp' (what the logs and errors call it). */
  readonly transport: string;
  /** buf = op over the ranks of buf, on every rank. */
  allReduce(buf: B, op: ReduceOp): Promise<void>;
  /** buf = root's buf, on every rank. */
  broadcast(buf: B, root: number): Promise<void>;
  /** Returns on every rank once every rank has called it. */
  barrier(): Promise<void>;
  /** Called once with the error that ended the group (a rank died, hung, or left early). */
  onFailure(listener: (e: Error) => void): void;
  /** Leave the group (every rank, after its last operation). */
  close(): Promise<void>;
}
