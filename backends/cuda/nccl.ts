/**
 * @file NCCL through koffi: the communicator of one rank (ncclCommInitRank from a 128-byte unique id
 * that rank 0 makes and the others receive over the rendezvous, runtime/parallel/), all-reduce and
 * broadcast of device buffers on a stream (capturable in a CUDA graph), grouped calls, abort.
 *
 * The library is found in this order (the runtime reads KILN_NCCL_LIB and passes it as `file`): the
 * given file or folder, the CUDA library folder, the PyTorch wheel's `nvidia/nccl/lib` folders
 * (`ncclSearchList`), then the dynamic loader's own search (`libnccl.so.2`, ldconfig). When none loads,
 * the error lists every path tried and says how to point Kiln at one. Failures of NCCL calls are
 * CudaErrors naming the call, NCCL's message and its last-error text. Like the rest of the backend this
 * file reads no environment.
 */
import * as koffi from 'koffi';
import { join } from 'node:path';
import type { DType } from '../../ir/dtype.ts';
import { CudaError } from './errors.ts';
import { DEFAULT_CUDA_LIB_DIR } from './options.ts';

type Fn = (...args: unknown[]) => unknown;

/** Bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES). */
export const NCCL_UNIQUE_ID_BYTES = 128;

/** ncclDataType_t of the dtypes Kiln reduces. */
const NCCL_DTYPE: Partial<Record<DType, number>> = { i32: 2, u32: 3, f16: 6, f32: 7, bf16: 9 };
/** ncclRedOp_t: sum, and avg (sum / ranks, NCCL ≥ 2.10). */
const NCCL_OP = { sum: 0, max: 2, min: 3, mean: 4 } as const;
export type NcclOp = keyof typeof NCCL_OP;

/** ncclResult_t values worded for people. */
const NCCL_RESULT: Record<number, string> = {
  1: 'unhandled CUDA error', 2: 'system error', 3: 'internal error', 4: 'invalid argument', 5: 'invalid usage', 6: 'remote error (a peer failed)', 7: 'in progress',
};

/** Where libnccl is looked for, in order (the loader's own search last). */
export function ncclSearchList(o: { file?: string; libDir?: string; pythonDirs?: readonly string[] } = {}): string[] {
  const names = ['libnccl.so.2', 'libnccl.so'];
  const inDir = (d: string) => names.map((n) => join(d, n));
  const given = o.file ? (/\.so(\.\d+)*$/.test(o.file) ? [o.file] : inDir(o.file)) : [];
  return [...given, ...inDir(o.libDir ?? DEFAULT_CUDA_LIB_DIR), ...(o.pythonDirs ?? []).flatMap(inDir), ...names];
}

export const NCCL_SIGNATURES: Record<string, string> = {
  getVersion: 'int ncclGetVersion(_Out_ int *version)',
  getUniqueId: 'int ncclGetUniqueId(_Out_ uint8_t *id)',
  commInitRank: 'int ncclCommInitRank(_Out_ void **comm, int nranks, NcclUniqueId id, int rank)',
  allReduce: 'int ncclAllReduce(uint64_t send, uint64_t recv, size_t count, int dtype, int op, void *comm, void *stream)',
  broadcast: 'int ncclBroadcast(uint64_t send, uint64_t recv, size_t count, int dtype, int root, void *comm, void *stream)',
  groupStart: 'int ncclGroupStart()',
  groupEnd: 'int ncclGroupEnd()',
  commDestroy: 'int ncclCommDestroy(void *comm)',
  commAbort: 'int ncclCommAbort(void *comm)',
  asyncError: 'int ncclCommGetAsyncError(void *comm, _Out_ int *result)',
  errorString: 'const char *ncclGetErrorString(int result)',
  lastError: 'const char *ncclGetLastError(void *comm)',
};

/** The NCCL functions an NcclComm calls, by name: loaded through koffi, or fakes in tests. */
export type NcclApi = Readonly<Record<string, Fn>>;

let loaded: { api: NcclApi; path: string } | undefined;

/**
 * Load libnccl from the first of `candidates` that loads (see ncclSearchList); a CudaError listing
 * every path tried, and what to set, when none does.
 */
export function loadNccl(candidates: readonly string[] = ncclSearchList()): { api: NcclApi; path: string } {
  if (loaded) return loaded;
  const tried: string[] = [];
  for (const c of candidates) {
    let lib: koffi.LibraryHandle;
    try {
      lib = koffi.load(c);
    } catch (e) {
      tried.push(`${c} (${(e as Error).message.split('\n')[0]!.replace(/^.*?: /, '')})`);
      continue;
    }
    koffi.struct('NcclUniqueId', { internal: koffi.array('uint8_t', NCCL_UNIQUE_ID_BYTES) });
    const api: Record<string, Fn> = {};
    for (const [k, sig] of Object.entries(NCCL_SIGNATURES)) {
      try {
        api[k] = lib.func(sig) as unknown as Fn;
      } catch {
        api[k] = () => {
          throw new CudaError(`${c} has no ${sig.replace(/^.*?(\w+)\(.*$/, '$1')} (NCCL too old: Kiln needs NCCL ≥ 2.13)`);
        };
      }
    }
    return (loaded = { api, path: c });
  }
  throw new CudaError(
    `cannot load NCCL (libnccl.so.2), which multi-GPU training needs; tried: ${tried.join('; ')}. ` +
      'Install NCCL (e.g. the nvidia-nccl-cu13 wheel that PyTorch ships, or libnccl2) and set KILN_NCCL_LIB to the library file or its folder',
  );
}

/** Which device dtypes NCCL reduces for Kiln. */
export function ncclDtype(d: DType): number {
  const t = NCCL_DTYPE[d];
  if (t === undefined) throw new CudaError(`NCCL: Kiln does not reduce ${d} buffers (f32, bf16, f16, i32, u32)`);
  return t;
}

/** One rank's NCCL communicator (one GPU, one process). */
export class NcclComm {
  private comm: unknown;
  private aborted = false;

  /** NCCL's version as "major.minor.patch". */
  static version(api: NcclApi): string {
    const v = [0];
    const rc = api.getVersion!(v);
    if (rc !== 0) throw new CudaError(`ncclGetVersion failed: ${String(api.errorString!(rc))}`);
    const n = Number(v[0]);
    // NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9
    return `${Math.floor(n / 10000)}.${Math.floor(n / 100) % 100}.${n % 100}`;
  }

  /** A fresh unique id (rank 0 makes it; every rank passes the same bytes to `init`). */
  static uniqueId(api: NcclApi): Uint8Array {
    const id = new Uint8Array(NCCL_UNIQUE_ID_BYTES);
    const rc = api.getUniqueId!(id);
    if (rc !== 0) throw new CudaError(`ncclGetUniqueId failed: ${describe(api, Number(rc))}`);
    return id;
  }

  /**
   * Join the communicator of `worldSize` ranks as `rank` (blocks until every rank has joined). The CUDA
   * context of this rank's GPU must be current (CudaDriver.get).
   */
  static init(api: NcclApi, id: Uint8Array, worldSize: number, rank: number): NcclComm {
    if (id.byteLength !== NCCL_UNIQUE_ID_BYTES) throw new CudaError(`NCCL unique id of ${id.byteLength} bytes (expected ${NCCL_UNIQUE_ID_BYTES})`);
    const c = [null as unknown];
    const rc = api.commInitRank!(c, worldSize, { internal: id }, rank);
    if (rc !== 0) throw new CudaError(`ncclCommInitRank(rank ${rank} of ${worldSize}) failed: ${describe(api, Number(rc))}`, Number(rc));
    return new NcclComm(api, c[0], rank, worldSize);
  }

  private constructor(private readonly api: NcclApi, comm: unknown, readonly rank: number, readonly worldSize: number) {
    this.comm = comm;
  }

  private check(call: string, rc: unknown): void {
    if (rc === 0) return;
    let last = '';
    try {
      last = String(this.api.lastError!(this.comm) ?? '');
    } catch {
      // no last-error text
    }
    throw new CudaError(`${call} failed on rank ${this.rank} of ${this.worldSize}: ${describe(this.api, Number(rc))}${last ? ` (${last})` : ''}`, Number(rc));
  }

  private live(call: string): void {
    if (this.aborted || !this.comm) throw new CudaError(`${call}: the NCCL communicator of rank ${this.rank} was aborted or destroyed`);
  }

  /** recv = op over ranks of send (`count` elements of `dtype`; recv may be send), enqueued on `stream`. */
  allReduce(send: bigint, recv: bigint, count: number, dtype: DType, op: NcclOp, stream: unknown): void {
    this.live('ncclAllReduce');
    this.check(`ncclAllReduce(${count} ${dtype})`, this.api.allReduce!(send, recv, count, ncclDtype(dtype), NCCL_OP[op], this.comm, stream));
  }

  /** recv = root's send on every rank, enqueued on `stream`. */
  broadcast(send: bigint, recv: bigint, count: number, dtype: DType, root: number, stream: unknown): void {
    this.live('ncclBroadcast');
    this.check(`ncclBroadcast(${count} ${dtype}, root ${root})`, this.api.broadcast!(send, recv, count, ncclDtype(dtype), root, this.comm, stream));
  }

  /** `bytes` raw bytes of root's buffer at `ptr` to the same address on every rank (ncclUint8), on `stream`. */
  broadcastBytes(ptr: bigint, bytes: number, root: number, stream: unknown): void {
    this.live('ncclBroadcast');
    this.check(`ncclBroadcast(${bytes} bytes, root ${root})`, this.api.broadcast!(ptr, ptr, bytes, 1, root, this.comm, stream));
  }

  /** The calls `enqueue` makes as one NCCL group (one fused launch for a bucket's gradients). */
  group(enqueue: () => void): void {
    this.check('ncclGroupStart', this.api.groupStart!());
    try {
      enqueue();
    } finally {
      this.check('ncclGroupEnd', this.api.groupEnd!());
    }
  }

  /** An asynchronous error of the communicator (a peer failed), or undefined. */
  asyncError(): string | undefined {
    if (!this.comm || this.aborted) return undefined;
    const r = [0];
    const rc = this.api.asyncError!(this.comm, r);
    if (rc !== 0) return describe(this.api, Number(rc));
    return r[0] === 0 || r[0] === 7 ? undefined : describe(this.api, Number(r[0]));
  }

  /** Abort: every pending NCCL kernel of this rank returns (what a watchdog does when a peer is gone). */
  abort(): void {
    if (this.aborted || !this.comm) return;
    this.aborted = true;
    this.api.commAbort!(this.comm);
    this.comm = null;
  }

  destroy(): void {
    if (this.aborted || !this.comm) return;
    this.check('ncclCommDestroy', this.api.commDestroy!(this.comm));
    this.comm = null;
  }
}

function describe(api: NcclApi, rc: number): string {
  let s = '';
  try {
    s = String(api.errorString!(rc) ?? '');
  } catch {
    // the code alone
  }
  return `${s || NCCL_RESULT[rc] || 'NCCL error'} (ncclResult ${rc})`;
}
