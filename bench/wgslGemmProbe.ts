/**
 * @file Probe of the f32 GEMM ceiling on a WebGPU device (GPU machine: `tsx bench/wgslGemmProbe.ts`):
 * hand-written WGSL SGEMMs outside the compiler (n×n×n, n a multiple of 128, row-major A and B, vec4
 * global loads, 128×128 workgroup tile, 8×8 outputs per invocation as 2×2 blocks of 4×4, A staged
 * transposed), with and without register prefetch of the next K tile, BK 8 or 16, with and without
 * Dawn's robustness clamps. It tells the code generator which structure pays on this device; checks 16
 * elements against an f64 dot product. One JSON line per variant.
 */
import { wgslDevice } from '../backends/wgsl/device.ts';

function source(bk: number, prefetch: boolean): string {
  const av = (128 * bk) / 4 / 256, bv = (bk * 128) / 4 / 256; // vec4 loads per invocation per tile
  const L: string[] = [];
  L.push('struct P { n: u32 }', '@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;', '@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;',
    '@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;', '@group(0) @binding(3) var<uniform> p: P;',
    `var<workgroup> As: array<vec4<f32>, ${(bk * 128) / 4}>;`, `var<workgroup> Bs: array<vec4<f32>, ${(bk * 128) / 4}>;`,
    '@compute @workgroup_size(16, 16, 1)',
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {',
    '  let n = p.n; let n4 = n / 4u; let i0 = wid.y * 128u; let j0 = wid.x * 128u; let tx = lid.x; let ty = lid.y;');
  for (let r = 0; r < 8; r++) for (let c = 0; c < 2; c++) L.push(`  var c${r}_${c} = vec4<f32>(0.0);`);
  // A vec4 q of this invocation: element e = tid + 256 q; row = e / (bk/4), k4 = e % (bk/4).
  const aLoad = (q: number, k0: string) => `A[(i0 + (tid + ${256 * q}u) / ${bk / 4}u) * n4 + (${k0}) / 4u + (tid + ${256 * q}u) % ${bk / 4}u]`;
  const bLoad = (q: number, k0: string) => `B[(${k0} + (tid + ${256 * q}u) / 32u) * n4 + j0 / 4u + (tid + ${256 * q}u) % 32u]`;
  const store = (pre: string) => {
    const o: string[] = [];
    for (let q = 0; q < av; q++) {
      o.push(`    { let e = tid + ${256 * q}u; let r = e / ${bk / 4}u; let k = (e % ${bk / 4}u) * 4u; let v = ${pre}a${q};`);
      for (let t = 0; t < 4; t++) o.push(`      As[(k + ${t}u) * 32u + r / 4u][r % 4u] = v[${t}];`);
      o.push('    }');
    }
    for (let q = 0; q < bv; q++) o.push(`    Bs[tid + ${256 * q}u] = ${pre}b${q};`);
    return o;
  };
  if (prefetch) {
    for (let q = 0; q < av; q++) L.push(`  var pa${q} = ${aLoad(q, '0u')};`);
    for (let q = 0; q < bv; q++) L.push(`  var pb${q} = ${bLoad(q, '0u')};`);
  }
  L.push(`  for (var k0 = 0u; k0 < n; k0 += ${bk}u) {`);
  if (!prefetch) {
    for (let q = 0; q < av; q++) L.push(`    let a${q} = ${aLoad(q, 'k0')};`);
    for (let q = 0; q < bv; q++) L.push(`    let b${q} = ${bLoad(q, 'k0')};`);
    L.push(...store(''));
  } else {
    L.push(...store('p'));
  }
  L.push('    workgroupBarrier();');
  if (prefetch) {
    L.push(`    if (k0 + ${bk}u < n) {`);
    for (let q = 0; q < av; q++) L.push(`      pa${q} = ${aLoad(q, `k0 + ${bk}u`)};`);
    for (let q = 0; q < bv; q++) L.push(`      pb${q} = ${bLoad(q, `k0 + ${bk}u`)};`);
    L.push('    }');
  }
  L.push(`    for (var k = 0u; k < ${bk}u; k++) {`,
    '      let a0 = As[k * 32u + ty]; let a1 = As[k * 32u + 16u + ty]; let b0 = Bs[k * 32u + tx]; let b1 = Bs[k * 32u + 16u + tx];');
  for (let r = 0; r < 8; r++) for (let c = 0; c < 2; c++) L.push(`      c${r}_${c} = fma(vec4<f32>(a${r >> 2}[${r & 3}]), b${c}, c${r}_${c});`);
  L.push('    }', '    workgroupBarrier();', '  }');
  // rows: ty*4 + r (r<4) and 64 + ty*4 + (r-4); cols: tx*4 (b0) and 64 + tx*4 (b1)
  for (let r = 0; r < 8; r++) for (let c = 0; c < 2; c++)
    L.push(`  C[(i0 + ${r < 4 ? 0 : 64}u + ty * 4u + ${r & 3}u) * n4 + j0 / 4u + ${c * 16}u + tx] = c${r}_${c};`);
  L.push('}');
  return L.join('\n');
}

const n = Number(process.env.N ?? 4096);
const a = new Float32Array(n * n).map(() => Math.random() - 0.5), b = new Float32Array(n * n).map(() => Math.random() - 0.5);
for (const robustness of [true, false]) {
  const { device, adapterInfo } = await wgslDevice({ robustness });
  const buf = (data: Float32Array | null, usage: number) => {
    const g = device.createBuffer({ size: n * n * 4, usage });
    if (data) device.queue.writeBuffer(g, 0, data);
    return g;
  };
  const S = GPUBufferUsage.STORAGE, D = GPUBufferUsage.COPY_DST;
  const ga = buf(a, S | D), gb = buf(b, S | D), gc = buf(null, S | GPUBufferUsage.COPY_SRC);
  const u = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | D });
  device.queue.writeBuffer(u, 0, new Uint32Array([n, 0, 0, 0]));
  const rb = device.createBuffer({ size: n * n * 4, usage: GPUBufferUsage.MAP_READ | D });
  for (const bk of [8, 16]) for (const prefetch of [false, true]) {
    try {
      const module = device.createShaderModule({ code: source(bk, prefetch) });
      const pipe = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [ga, gb, gc, u].map((buffer, binding) => ({ binding, resource: { buffer } })) });
      const run = async (reps: number) => {
        await device.queue.onSubmittedWorkDone();
        const t = performance.now();
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipe);
        pass.setBindGroup(0, bg);
        for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(n / 128, n / 128);
        pass.end();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - t) / reps;
      };
      await run(2);
      const reps = n <= 4096 ? 20 : 5;
      const ms = Math.min(await run(reps), await run(reps));
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(gc, 0, rb, 0, n * n * 4);
      device.queue.submit([enc.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const c = new Float32Array(rb.getMappedRange().slice(0));
      rb.unmap();
      let err = 0;
      for (let q = 0; q < 16; q++) {
        const i = (q * 7919) % n, j = (q * 104729) % n;
        let s = 0, sa = 0;
        for (let k = 0; k < n; k++) { s += a[i * n + k]! * b[k * n + j]!; sa += Math.abs(a[i * n + k]! * b[k * n + j]!); }
        err = Math.max(err, Math.abs(c[i * n + j]! - s) / sa);
      }
      console.log(JSON.stringify({ bench: 'wgsl-gemm-probe', n, bk, prefetch, robustness, ms, tflops: (2 * n ** 3) / (ms * 1e-3) / 1e12, maxRelErr: err, adapter: adapterInfo }));
    } catch (e) {
      console.log(JSON.stringify({ bench: 'wgsl-gemm-probe', n, bk, prefetch, robustness, error: (e as Error).message.slice(0, 300) }));
    }
  }
}
process.exit(0);
