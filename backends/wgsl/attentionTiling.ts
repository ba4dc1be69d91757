/**
 * @file The workgroup tiling of the WGSL backend's f32 flash attention (attention.ts): a pure function of
 * the head dims and the device's workgroup memory. (The CUDA tensor-core choice is in the kernel IR,
 * compiler/schedule/attentionTiling.ts; this one depends on a device limit the compiler does not know at
 * compile time: it moves there when CompileOptions carries a WGSL target, as it carries a GemmTarget.)
 *
 * Every pass runs 16 × threadRows invocations as a grid over a score tile of `rows` × `cols` (each
 * invocation owns rows/threadRows × cols/16 scores, rows strided by threadRows, columns strided by 16;
 * threadRows 16 by default; tiles given by the caller may take fewer) and stages its operand tiles
 * in workgroup memory as f32 (arrays of vec4; padded rows carry one extra vec4 against bank conflicts):
 *  - 'forward' (also the backward's statistics pass): a block of `rows` query rows walks the keys in tiles
 *    of `cols`; Q (rows × dk), K (cols × dk+4, padded), V (cols × dv), the
 *    probability tile (rows × cols+4) and 3 statistics per row;
 *  - 'dq': `rows` query rows, key tiles of `cols`; Q, dO, K (padded), V (padded), dS (rows × cols+4),
 *    2 statistics per row;
 *  - 'dkv': `rows` key rows, query tiles of `cols`; K, V, Q (padded), dO (padded), P and dS (rows ×
 *    cols+4 each), 2 statistics per query.
 * The largest tile that fits the workgroup memory is chosen (larger tiles read each staged operand value
 * into more products); undefined when not even 16×16 fits (the backend keeps its per-row kernels).
 */

export type WorkgroupAttentionPass = 'forward' | 'dq' | 'dkv';

export interface WorkgroupAttentionTile {
  /** Score tile rows (query rows for 'forward'/'dq', key rows for 'dkv'), a multiple of threadRows. */
  readonly rows: number;
  /** Score tile columns (the walked dimension), a multiple of 16. */
  readonly cols: number;
  /**
   * Invocation rows: the pass runs 16 × threadRows invocations (default 16: 256), each owning
   * rows/threadRows score rows (strided by threadRows) × cols/16 columns, and as many rows of the
   * accumulated outputs; fewer invocations per tile = more products per value read from workgroup memory.
   */
  readonly threadRows?: number;
}

/** The tile's invocation rows (16 × that many invocations). */
export const tileThreadRows = (t: WorkgroupAttentionTile): number => t.threadRows ?? 16;

/** Why `t` is not a valid tile (undefined when it is). */
export function workgroupAttentionTileError(t: WorkgroupAttentionTile): string | undefined {
  const gy = tileThreadRows(t);
  if (!Number.isInteger(gy) || gy < 1 || gy > 16) return `threadRows ${gy} is not an integer in 1..16`;
  if (t.rows <= 0 || t.rows % gy) return `rows ${t.rows} is not a positive multiple of threadRows ${gy}`;
  if (t.cols <= 0 || t.cols % 16) return `cols ${t.cols} is not a positive multiple of 16`;
  return undefined;
}

const CANDIDATES: Record<WorkgroupAttentionPass, ReadonlyArray<WorkgroupAttentionTile>> = {
  forward: [{ rows: 64, cols: 32 }, { rows: 32, cols: 32 }, { rows: 16, cols: 32 }, { rows: 16, cols: 16 }],
  // 16 invocation rows: 8 (4 rows each) was no faster on an H200 (2026-12-02, fifth session, window 1:
  // ~3% slower with 32×32 tiles; 4 invocation rows ~80% slower; bench/RESULTS.md).
  dq: [{ rows: 64, cols: 32 }, { rows: 32, cols: 32 }, { rows: 32, cols: 16 }, { rows: 16, cols: 16 }],
  dkv: [{ rows: 64, cols: 32 }, { rows: 32, cols: 32 }, { rows: 32, cols: 16 }, { rows: 16, cols: 16 }],
};

/** Workgroup memory (bytes) a pass needs with tile `t` at head dims dk, dv. */
export function workgroupAttentionBytes(pass: WorkgroupAttentionPass, t: WorkgroupAttentionTile, dk: number, dv: number): number {
  const { rows: r, cols: c } = t;
  const floats =
    pass === 'forward' ? r * dk + c * (dk + 4) + c * dv + r * (c + 4) + 3 * r
      : pass === 'dq' ? r * dk + r * dv + c * (dk + 4) + c * (dv + 4) + r * (c + 4) + 2 * r
        : r * dk + r * dv + c * (dk + 4) + c * (dv + 4) + 2 * r * (c + 4) + 2 * c;
  return floats * 4;
}

/** The tile for `pass` within `storageBytes` of workgroup memory, or undefined when none fits. */
export function chooseWorkgroupAttentionTile(pass: WorkgroupAttentionPass, dk: number, dv: number, storageBytes: number): WorkgroupAttentionTile | undefined {
  return CANDIDATES[pass].find((t) => workgroupAttentionBytes(pass, t, dk, dv) <= storageBytes);
}
