/**
 * @file Probe of the f16 subgroup-matrix GEMM on a WebGPU device (GPU machine: `tsx bench/wgslGemmF16Probe.ts`):
 * the hand-checked standalone kernels of backends/wgsl/gemmSubgroupMatrix.ts (sgmPlainModule: row-major
 * f16 A, B (or Bᵀ: tile suffix /T), f32 C, n a multiple of the tile), one per tile of TILES, first at 256³ for correctness, then
 * timed at SIZES (default 4096,8192) in one submission of N dispatches after a warm-up. Inputs are
 * multiples of 1/16 in [-1/2, 1/2]: every product and partial sum is exact in f32 (19 significant bits
 * at most), so a correct kernel equals the f64 dot product exactly on the 16 checked outputs. Prints the
 * adapter's subgroup-matrix configurations, then one JSON line per (tile, size), then a table.
 */
import { wgslDevice } from '../backends/wgsl/device.ts';
import { sgmPlainModule, sgmThreads, sgmWorkgroupBytes, type SgmTile } from '../backends/wgsl/gemmSubgroupMatrix.ts';

type ProbeTile = SgmTile & { bT: boolean };
const parseTile = (s: string): ProbeTile => {
  // bm x bn x bk / wm x wn / staging [/T: B given transposed] [/n: tiles staged in the operands' own layout] [/gG: tile order groups], e.g. 128x128x32/64x32/scalar/g8
  const m = /^(\d+)x(\d+)x(\d+)\/(\d+)x(\d+)\/(scalar|matrix|direct)(\/T)?(\/n)?(?:\/g(\d+))?$/.exec(s);
  if (!m) throw new Error(`TILES: bad tile '${s}' (want BMxBNxBK/WMxWN/scalar|matrix|direct[/T][/n][/gG])`);
  return { bm: +m[1]!, bn: +m[2]!, bk: +m[3]!, wm: +m[4]!, wn: +m[5]!, staging: m[6] as SgmTile['staging'], bT: Boolean(m[7]), smem: m[8] ? 'native' : 'k', group: m[9] ? +m[9] : 1 };
};
const TILES = (process.env.TILES ?? ['128x128x32/64x32/scalar', '128x128x32/64x32/matrix', '128x128x32/64x32/scalar/T', '128x128x32/64x64/scalar', '128x128x32/64x64/matrix', '128x128x16/64x32/scalar', '128x256x16/64x64/scalar', '256x128x16/64x64/scalar', '64x64x32/32x32/scalar', '128x128x32/32x64/scalar', '128x128x32/64x32/direct'].join(',')).split(',').map(parseTile);
const SIZES = (process.env.SIZES ?? '4096,8192').split(',').map(Number);
const ROBUST = process.env.ROBUSTNESS === 'on';
const name = (t: ProbeTile) => `${t.bm}x${t.bn}x${t.bk}/${t.wm}x${t.wn}/${t.staging}${t.bT ? '/T' : ''}${t.smem === 'native' ? '/n' : ''}${t.group && t.group > 1 ? `/g${t.group}` : ''}`;

const { device, adapterInfo, features, subgroupMatrixF16 } = await wgslDevice({ robustness: ROBUST });
console.log(`adapter: ${adapterInfo}; features: ${[...features].filter((f) => /f16|subgroup/.test(f)).join(', ')}; subgroupMatrixF16 ${subgroupMatrixF16}; robustness ${ROBUST ? 'on' : 'off'}`);
if (!features.has('chromium-experimental-subgroup-matrix') || !features.has('shader-f16')) {
  console.log('SKIP: the adapter lacks chromium-experimental-subgroup-matrix or shader-f16');
  process.exit(0);
}

// f16 bits of v/16 for v in -8..8.
const f16Of = (x: number) => {
  if (x === 0) return 0;
  const s = x < 0 ? 0x8000 : 0, a = Math.abs(x), e = Math.floor(Math.log2(a));
  return s | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
};
const TABLE = Array.from({ length: 17 }, (_, i) => f16Of((i - 8) / 16));
let seed = 12345;
const rand17 = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % 17;
const inputs = (n: number) => {
  const a = new Uint16Array(n * n), b = new Uint16Array(n * n);
  const av = new Int8Array(n * n), bv = new Int8Array(n * n);
  for (let i = 0; i < n * n; i++) { const x = rand17(), y = rand17(); a[i] = TABLE[x]!; b[i] = TABLE[y]!; av[i] = x - 8; bv[i] = y - 8; }
  return { a, b, av, bv };
};

type Row = { tile: string; n: number; ms?: number; tflops?: number; maxAbsErr?: number; error?: string };
const rows: Row[] = [];
const S = GPUBufferUsage.STORAGE, D = GPUBufferUsage.COPY_DST;

async function runOne(t: ProbeTile, n: number, data: ReturnType<typeof inputs>, bufs: { ga: GPUBuffer; gb: GPUBuffer; gc: GPUBuffer; rb: GPUBuffer }, timed: boolean): Promise<Row> {
  const row: Row = { tile: name(t), n };
  try {
    const { code, workgroups } = sgmPlainModule(t, n, n, n, t.bT);
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    if (msgs.length) throw new Error(`WGSL: ${msgs.join(' | ').slice(0, 600)}`);
    const pipe = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [bufs.ga, bufs.gb, bufs.gc].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const scopeErr = await device.popErrorScope();
    if (scopeErr) throw new Error(`validation: ${scopeErr.message.slice(0, 600)}`);
    const run = async (reps: number) => {
      await device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bg);
      for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(...workgroups);
      pass.end();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / reps;
    };
    await run(1);
    // 16 checked outputs.
    const pts = Array.from({ length: 16 }, (_, q) => [(q * 7919 + 13) % n, (q * 104729 + 7) % n] as const);
    const enc = device.createCommandEncoder();
    pts.forEach(([i, j], q) => enc.copyBufferToBuffer(bufs.gc, (i * n + j) * 4, bufs.rb, q * 4, 4));
    device.queue.submit([enc.finish()]);
    await bufs.rb.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(bufs.rb.getMappedRange().slice(0));
    bufs.rb.unmap();
    let err = 0;
    pts.forEach(([i, j], q) => {
      let s = 0;
      for (let p = 0; p < n; p++) s += data.av[i * n + p]! * data.bv[t.bT ? j * n + p : p * n + j]!;
      err = Math.max(err, Math.abs(got[q]! - s / 256));
    });
    row.maxAbsErr = err;
    if (timed) {
      const reps = n <= 4096 ? 20 : 6;
      await run(2);
      const ms = Math.min(await run(reps), await run(reps));
      row.ms = ms;
      row.tflops = (2 * n ** 3) / (ms * 1e-3) / 1e12;
    }
  } catch (e) {
    row.error = (e as Error).message.slice(0, 700);
  }
  console.log(JSON.stringify({ bench: 'wgsl-f16-sgm-probe', threads: sgmThreads(t), ...row, adapter: adapterInfo }));
  console.log(`row ${row.tile} n=${n}: ${row.error ? `ERROR ${row.error.slice(0, 300)}` : `${row.ms?.toFixed(3) ?? '-'} ms ${row.tflops?.toFixed(1) ?? '-'} TFLOP/s err ${row.maxAbsErr}`}`);
  return row;
}

for (const n of [256, ...SIZES]) {
  const t0 = performance.now();
  const data = inputs(n);
  const mk = (bytes: number, usage: number) => device.createBuffer({ size: bytes, usage });
  const ga = mk(n * n * 2, S | D), gb = mk(n * n * 2, S | D), gc = mk(n * n * 4, S | GPUBufferUsage.COPY_SRC);
  device.queue.writeBuffer(ga, 0, data.a);
  device.queue.writeBuffer(gb, 0, data.b);
  const rb = mk(64, GPUBufferUsage.MAP_READ | D);
  console.log(`n=${n}: inputs ready in ${(performance.now() - t0).toFixed(0)} ms`);
  for (const t of TILES) {
    if (n % t.bm || n % t.bn) continue;
    if (sgmWorkgroupBytes(t, false, 'k', t.bT ? 'k' : 'mn') > device.limits.maxComputeWorkgroupStorageSize) { console.log(`skip ${name(t)}: ${sgmWorkgroupBytes(t, false, 'k', t.bT ? 'k' : 'mn')} B of workgroup memory`); continue; }
    if (n > 256 && rows.some((r) => r.n === 256 && r.tile === name(t) && (r.error || r.maxAbsErr !== 0))) continue; // broken at 256: skip
    rows.push(await runOne(t, n, data, { ga, gb, gc, rb }, n > 256));
  }
  ga.destroy(); gb.destroy(); gc.destroy(); rb.destroy();
}
console.log('\n| tile | n | ms | TFLOP/s | max abs err |\n| --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.tile} | ${r.n} | ${r.ms?.toFixed(3) ?? '-'} | ${r.tflops?.toFixed(1) ?? '-'} | ${r.error ? `ERROR ${r.error.slice(0, 120)}` : r.maxAbsErr} |`);
process.exit(0);
