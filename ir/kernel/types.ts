/**
 * @file The kernel IR: what the fusion/lowering stage produces and the code generators print.
 *
 * A KernelProgram is a list of kernels in launch order over a set of buffers. Buffers are graph
 * inputs and outputs (external, bound by name), constants (initialized once), or temporaries that
 * live at planned offsets in one arena. A kernel is one launch:
 *  - 'loop': a parallel grid (vars g0..gk over `grid`) whose body is a small structured program of
 *    lets, sequential loops, reductions (each a loop with an accumulator) and stores. Elementwise
 *    kernels have only lets and stores; row kernels (softmax, norms, cross-entropy, ...) have
 *    reduction phases over the row followed by a loop that stores the row.
 *  - 'matmul': a batched GEMM whose operands are expressions (loads through folded views, plus a
 *    cheap prologue) and whose epilogue is statements run per output element with the accumulator
 *    in `acc` (bias, activation, residual, several stores).
 *  - 'attention' / 'attention_grad': flash-style attention forward and backward over operand
 *    expressions; backward writes any of dQ, dK, dV.
 * Expressions are typed trees; index expressions are i32 trees over loop variables (and loads, for
 * gathers). Loop variables are named by string; each kernel kind documents the names it binds.
 */
import type { DType } from '../dtype.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../ops.ts';

export type BufferKind = 'input' | 'output' | 'const' | 'temp';

export interface BufferDecl {
  readonly id: number;
  readonly dtype: DType;
  readonly numel: number;
  readonly kind: BufferKind;
  /** Graph input or output name (input/output buffers). */
  readonly name?: string;
  /** Constant values (const buffers), row-major. */
  readonly data?: readonly number[];
  /** Arena byte offset (temp buffers, after memory planning). */
  offset?: number;
  /**
   * An output `next.x` written in place: the id of input x's buffer, whose memory it shares (memory
   * planning proved that no kernel reads x's old value after the write). A backend may ignore it and
   * keep the output separate (then it copies the update onto the input after the run).
   */
  inPlaceOf?: number;
}

export type Expr =
  | { readonly k: 'const'; readonly v: number; readonly dtype: DType }
  /** A loop or grid variable (i32). */
  | { readonly k: 'var'; readonly name: string; readonly dtype: 'i32' }
  /** A scalar bound by `let`, or an accumulator after its reduce statement. */
  | { readonly k: 'ref'; readonly name: string; readonly dtype: DType }
  | { readonly k: 'load'; readonly buf: number; readonly index: Expr; readonly dtype: DType }
  | { readonly k: 'un'; readonly op: UnaryOp; readonly a: Expr; readonly dtype: DType }
  /** Integer div/mod on index expressions use the same ops (truncating; operands are non-negative). */
  | { readonly k: 'bin'; readonly op: BinaryOp | CompareOp | LogicalOp; readonly a: Expr; readonly b: Expr; readonly dtype: DType }
  | { readonly k: 'select'; readonly c: Expr; readonly a: Expr; readonly b: Expr; readonly dtype: DType }
  | { readonly k: 'cast'; readonly a: Expr; readonly dtype: DType }
  /** Philox element `index` of stream `stream` under seed (s0, s1): see ir/philox.ts. */
  | { readonly k: 'random'; readonly dist: 'uniform' | 'normal'; readonly s0: Expr; readonly s1: Expr; readonly stream: number; readonly index: Expr; readonly dtype: DType };

export type ReduceKind = 'sum' | 'max' | 'min' | 'argmax';

export type Stmt =
  | { readonly k: 'let'; readonly name: string; readonly value: Expr }
  /** A sequential loop: `var` runs 0..extent-1. */
  | { readonly k: 'loop'; readonly var: string; readonly extent: number; readonly body: readonly Stmt[] }
  /**
   * acc ← identity; for var in 0..extent-1 { body; acc ← op(acc, value) }. Afterwards `acc` is a ref of
   * type `dtype` (argmax: the i32 index of the first maximum of `value`; NaN counts as maximal).
   */
  | {
      readonly k: 'reduce'; readonly acc: string; readonly op: ReduceKind; readonly dtype: DType;
      readonly var: string; readonly extent: number; readonly body: readonly Stmt[]; readonly value: Expr;
    }
  /** buf[index] = value ('set') or buf[index] += value ('add': atomic where launches run in parallel). */
  | { readonly k: 'store'; readonly buf: number; readonly index: Expr; readonly value: Expr; readonly mode: 'set' | 'add' };

interface KernelBase {
  readonly name: string;
  /** Graph node ids this kernel computes (for reports and debugging). */
  readonly nodes: readonly number[];
}

/** Grid vars g0..g(n-1) range over `grid`; `body` runs once per grid point. */
export interface LoopKernel extends KernelBase {
  readonly kind: 'loop';
  readonly grid: readonly number[];
  readonly body: readonly Stmt[];
  /** How a row kernel's grid points map to GPU threads, set by the tiling stage (compiler/schedule/rowMapping.ts). */
  readonly rows?: RowMapping;
}

/**
 * The thread mapping of a row kernel (one with reductions or row loops), decided by the compiler:
 *  - 'block': one block of `threads` per grid point; its reductions and row loops are strided over
 *    the threads (rows contiguous in memory: norms, softmax, cross-entropy);
 *  - 'column': `points` consecutive grid points per block, `lanes` threads each along the reduced
 *    axis (reductions strided in memory along the reduced axis and contiguous along the last grid
 *    axis: sums over tokens or batch, the bias and modulation gradients). With `split` > 1 each
 *    reduction's extent is cut into `split` chunks of `ceil(extent / split)`: pass 1 writes one partial
 *    per (chunk, grid point) to scratch, pass 2 combines them in chunk order (deterministic) and runs
 *    the statements after the reductions.
 */
export type RowMapping =
  | { readonly kind: 'block'; readonly threads: number }
  | { readonly kind: 'column'; readonly points: number; readonly lanes: number; readonly split: number };

/**
 * The shape of one matrix-multiply-accumulate step D[m×n] += A[m×k]·B[k×n]: a block tile, a warp
 * tile, or one instruction's fragment (CUDA mma.sync m16n8k16, a WGSL subgroup-matrix 8×8×8, ...).
 */
export interface FragmentShape {
  readonly m: number;
  readonly n: number;
  readonly k: number;
}

/**
 * One matrix instruction of a target: its fragment shape, operand and accumulator dtypes, and the
 * instruction family (`mma.sync` for CUDA warp-level MMA; other backends name their own, e.g.
 * `subgroup_matrix`). A warp (subgroup) of `threads` lanes executes it cooperatively.
 */
export interface MmaInstr extends FragmentShape {
  readonly family: string;
  readonly ab: DType;
  readonly acc: DType;
  readonly threads: number;
}

/** What the tiling stage needs to know about a device. */
export interface GemmTarget {
  readonly name: string;
  /** Matrix instructions, by operand dtype. */
  readonly mma: readonly MmaInstr[];
  /** Multiprocessors (CUDA SMs, GPU compute units): the wave size in blocks. */
  readonly processors: number;
  /** Shared memory one block may use, bytes. */
  readonly sharedBytes: number;
  /** Lanes of a warp / subgroup. */
  readonly warpSize: number;
}

/** Who computes a matmul kernel: a generated kernel (tensor cores or SIMT) or a vendor library. */
export type GemmProvider = 'tensor-core' | 'simt' | 'cublas' | 'cublaslt';

/**
 * How one operand tile reaches fast (shared/workgroup) memory.
 *  - staging 'async': the operand is a plain strided load of a buffer already in the instruction's
 *    dtype, copied verbatim in 16-byte chunks (cp.async on CUDA), several stages in flight;
 *  - staging 'registers': the operand expression (prologue, casts such as f32 master weights →
 *    bf16, gathers) is evaluated per element into registers, converted, and stored.
 *  - major: which operand dimension is contiguous in the tile (and fastest across threads when
 *    loading): 'k' (p) or 'mn' (i for a, j for b). Fragment loads transpose as needed.
 */
export interface OperandPlan {
  readonly staging: 'async' | 'registers';
  readonly major: 'k' | 'mn';
}

/**
 * The schedule of a matmul kernel, decided by the compiler (compiler/schedule/tiling.ts): a grid of
 * `block` tiles, each computed by warps.m × warps.n warps (warp tile = block / warps, itself a grid
 * of `mma` fragments), K advancing `block.k` at a time through a ring of `stages` shared-memory
 * buffers. Library providers ignore the tile (they record the default one for reports).
 */
export interface TileSchedule {
  readonly provider: GemmProvider;
  readonly block: FragmentShape;
  readonly warps: { readonly m: number; readonly n: number };
  readonly stages: number;
  /** The matrix instruction (tensor-core providers). */
  readonly mma?: MmaInstr;
  readonly a: OperandPlan;
  readonly b: OperandPlan;
  /** Why this schedule: 'default' (deterministic rule) or 'measured' (tuning cache). */
  readonly source: 'default' | 'measured';
}

/**
 * out[b.., i, j] = epilogue(acc = Σ_p a(b.., i, p) · b(b.., p, j)). Vars: b0..b(n-1) over `batch`,
 * i < m, j < n, p < k. `a` uses b*, i, p; `b` uses b*, p, j; the epilogue uses b*, i, j and ref `acc`
 * (f32 for float operands). `tile` is set by the compiler's tiling stage.
 */
export interface MatmulKernel extends KernelBase {
  readonly kind: 'matmul';
  readonly batch: readonly number[];
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: Expr;
  readonly b: Expr;
  readonly accDType: DType;
  readonly epilogue: readonly Stmt[];
  readonly tile?: TileSchedule;
}

/**
 * out[b.., s, e] = Σ_t softmax_t(scale · Σ_d q(b.., s, d) k(b.., t, d) [t ≤ s if causal]) v(b.., t, e).
 * Vars: b* over batch, s < sq, t < sk, d < dk, e < dv. `q` uses b*, s, d; `k` b*, t, d; `v` b*, t, e;
 * `out` indexes with b*, s, e.
 */
export interface AttentionKernel extends KernelBase {
  readonly kind: 'attention';
  /** Tensor-core tiling (bf16 operands; chosen by compiler/schedule/attentionTiling.ts). Absent: the exact f32 path. */
  readonly tile?: AttentionTile;
  readonly batch: readonly number[];
  readonly sq: number;
  readonly sk: number;
  readonly dk: number;
  readonly dv: number;
  readonly causal: boolean;
  readonly scale: number;
  readonly q: Expr;
  readonly key: Expr;
  readonly v: Expr;
  readonly out: { readonly buf: number; readonly index: Expr; readonly dtype: DType };
}

/**
 * How a flash-attention kernel is tiled on tensor cores (FlashAttention-2). Forward: a block of `warps`
 * warps owns `bq` query rows (16 per warp) and walks the keys in tiles of `bk` rows, online softmax.
 * Backward: a block owns `bk` key rows (16 per warp) and walks the queries in tiles of `bq` rows,
 * accumulating dK and dV in registers over `dkvChunks` column passes (head dims > 128 recompute P per
 * pass) and adding dQ with atomics. Head dims are zero-padded to `dkPad`/`dvPad` (multiples of 16) in
 * shared memory; `stages` K/V (forward) or Q/dO (backward) tiles are in flight (cp.async).
 */
export interface AttentionTile {
  readonly bq: number;
  readonly bk: number;
  readonly warps: number;
  readonly stages: number;
  readonly dkPad: number;
  readonly dvPad: number;
  /** Backward only: column passes over dK/dV (1 = all head-dim columns accumulate at once). */
  readonly dkvChunks: number;
  /**
   * Backward only: dQ in a pass of its own over query blocks (`bq` rows, `warps` warps, `bk`-key tiles)
   * instead of f32 reductions from the key blocks of the main kernel.
   */
  readonly dq?: { readonly bq: number; readonly bk: number; readonly warps: number };
  /**
   * Hopper warpgroup MMA (wgmma, sm_90a) where the backend can render it (the other fields describe the
   * mma.sync fallback). Forward: `warpgroups` warpgroups × 64 query rows per block, `bk`-key tiles.
   * Backward: `warpgroups` × 64 key rows per block (`bk` = 64·warpgroups), query tiles of as many rows.
   */
  readonly wgmma?: {
    readonly warpgroups: number;
    readonly bk: number;
    /**
     * Forward: S of the next key tile in flight during O += P·V of this one (FlashAttention-3's overlap).
     * Backward: P computed while dP = V·dOᵀ runs, dS while dV += Pᵀ·dO runs.
     */
    readonly overlap?: boolean;
    /**
     * Blocks that must fit on one SM at once (`__launch_bounds__`'s second argument: ptxas keeps the
     * registers to 65536 / (threads · minBlocks)); with 2, one block's softmax overlaps another's MMAs.
     */
    readonly minBlocks?: number;
    /**
     * Warp specialization (FlashAttention-3's layout). 4 = one producer warpgroup streams the operands
     * into `stages`-deep shared-memory rings (cp.async, mbarriers full/empty per stage) while the 2
     * consumer warpgroups run the wgmma products and the softmax; setmaxnreg moves registers from the
     * producer (56) to the consumers (224). Forward: K/V tiles of `bk` keys. Backward: 64-row Q/dO tiles,
     * each consumer owning 64 of the block's 128 keys (dQ: half the columns each at head dim 128, consumer
     * 0 alone at 64). Absent or 0: every thread loads (double buffer, block barriers).
     */
    readonly producerWarps?: number;
    /** The ring depth with `producerWarps` (default 2). */
    readonly stages?: number;
    /**
     * With `producerWarps` and `overlap`: the 2 consumer warpgroups take turns to issue their products
     * (named barriers), so that one's softmax runs while the other's wgmma do (FlashAttention-3's ping-pong).
     */
    readonly pingpong?: boolean;
  };
}

/**
 * Gradients of attention. Operands as AttentionKernel plus `o` (forward output, b*, s, e) and
 * `dout` (b*, s, e). Writes dQ (index over b*, s, d), dK (b*, t, d), dV (b*, t, e) where present.
 */
export interface AttentionGradKernel extends Omit<AttentionKernel, 'kind' | 'out'> {
  readonly kind: 'attention_grad';
  readonly o: Expr;
  readonly dout: Expr;
  readonly dQ?: { readonly buf: number; readonly index: Expr; readonly dtype: DType };
  readonly dK?: { readonly buf: number; readonly index: Expr; readonly dtype: DType };
  readonly dV?: { readonly buf: number; readonly index: Expr; readonly dtype: DType };
}

export type Kernel = LoopKernel | MatmulKernel | AttentionKernel | AttentionGradKernel;

export interface KernelProgram {
  readonly name: string;
  readonly buffers: readonly BufferDecl[];
  readonly kernels: readonly Kernel[];
  /** Graph input name → buffer id. */
  readonly inputs: ReadonlyMap<string, number>;
  /** Graph output name → buffer id (an output may alias an input buffer or another output). */
  readonly outputs: ReadonlyMap<string, number>;
  /** Bytes of the temporaries' arena (after memory planning). */
  readonly arenaBytes: number;
}
