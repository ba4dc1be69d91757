/**
 * @file NCCL on this machine, one rank (world size 1) or as one of the ranks of `kiln`-style env
 * (KILN_RANK / KILN_WORLD_SIZE; the unique id then comes over runtime/parallel's TCP rendezvous): where
 * libnccl was found and its version, a correctness check of all-reduce (sum and mean, f32 and bf16, in
 * place and not), broadcast, and an all-reduce captured in a CUDA graph and replayed; then the
 * all-reduce of the real gradient buckets of LightningDiT training steps (the parameters' shapes, in
 * reverse order of the parameters, the order the backward produces them, cut into 25 MiB buckets like
 * PyTorch DDP's default; one NCCL group per bucket), launched from the host and as one captured graph,
 * timed with events. One JSON line per result.
 *
 *   tsx bench/ncclBench.ts [lightningdit:B/1 lightningdit:XL/1]
 */
import { CudaDriver } from '../backends/cuda/driver.ts';
import { NcclComm, loadNccl } from '../backends/cuda/nccl.ts';
import { buildProgram } from '../cli/programs.ts';
import { numel } from '../ir/shape.ts';
import { ncclCandidates } from '../runtime/parallel/ncclLibrary.ts';
import { bf16BitsToF32, f32ToBf16Bits } from '../ir/dtype.ts';

const emit = (o: object) => console.log(JSON.stringify(o));
const candidates = ncclCandidates();
const { api, path } = loadNccl(candidates);
const version = NcclComm.version(api);
emit({ what: 'library', path, version, searched: candidates.length });
const cuda = CudaDriver.get(process.env.CUDA_LIB_DIR);
const t0 = performance.now();
const comm = NcclComm.init(api, NcclComm.uniqueId(api), 1, 0);
emit({ what: 'init', worldSize: 1, ms: +(performance.now() - t0).toFixed(1), device: cuda.name });
const stream = cuda.createStream();

// Correctness at world size 1: sum and mean of one rank are the rank's values; broadcast copies.
const n = 1 << 20;
const host = new Float32Array(n).map((_, i) => ((i * 37) % 101) / 7 - 5);
const a = cuda.alloc(n * 4), b = cuda.alloc(n * 4);
const read = (p: bigint, m: number) => { const o = new Float32Array(m); cuda.synchronize(); cuda.download(o, p); return o; };
const same = (x: Float32Array, y: Float32Array) => x.every((v, i) => v === y[i]);
const checks: Record<string, boolean> = {};
cuda.upload(a, host);
comm.allReduce(a, b, n, 'f32', 'sum', stream); cuda.streamSynchronize(stream);
checks.f32Sum = same(read(b, n), host);
comm.allReduce(a, a, n, 'f32', 'mean', stream); cuda.streamSynchronize(stream);
checks.f32MeanInPlace = same(read(a, n), host);
const hb = Uint16Array.from(host, (v) => f32ToBf16Bits(v));
cuda.upload(a, hb);
comm.allReduce(a, b, n, 'bf16', 'mean', stream); cuda.streamSynchronize(stream);
const ob = new Uint16Array(n); cuda.synchronize(); cuda.download(ob, b);
checks.bf16Mean = ob.every((v, i) => bf16BitsToF32(v) === bf16BitsToF32(hb[i]!));
cuda.upload(a, host); cuda.zero(b, n * 4);
comm.broadcast(a, b, n, 'f32', 0, stream); cuda.streamSynchronize(stream);
checks.broadcast = same(read(b, n), host);
cuda.zero(b, n * 4);
const g = cuda.capture(stream, () => comm.allReduce(a, b, n, 'f32', 'sum', stream));
cuda.replay(g, stream); cuda.streamSynchronize(stream);
checks.capturedAllReduce = same(read(b, n), host);
emit({ what: 'correctness', ...checks, nodes: g.nodes });
cuda.destroyGraph(g);
cuda.free(a); cuda.free(b);

const BUCKET = 25 * 2 ** 20;
for (const spec of process.argv.slice(2).length ? process.argv.slice(2) : ['lightningdit:B/1', 'lightningdit:XL/1']) {
  const [prog, size] = spec.split(':') as [string, string];
  const graph = buildProgram(prog, { train: true, batch: 2, size });
  const params = graph.inputs.filter((i) => i.kind === 'param').reverse();
  const sizes = params.map((p) => numel(p.type.shape));
  const total = sizes.reduce((s, x) => s + x, 0);
  const base = cuda.alloc(total * 4);
  const grads: Array<{ ptr: bigint; n: number }> = [];
  let off = 0n;
  for (const s of sizes) { grads.push({ ptr: base + off * 4n, n: s }); off += BigInt(s); }
  const buckets: Array<typeof grads> = [[]];
  let bytes = 0;
  for (const gr of grads) {
    if (bytes >= BUCKET) { buckets.push([]); bytes = 0; }
    buckets.at(-1)!.push(gr);
    bytes += gr.n * 4;
  }
  const enqueue = () => { for (const bk of buckets) comm.group(() => { for (const gr of bk) comm.allReduce(gr.ptr, gr.ptr, gr.n, 'f32', 'mean', stream); }); };
  const time = (run: () => void, reps: number) => {
    run(); cuda.streamSynchronize(stream);
    const e0 = cuda.createEvent(true), e1 = cuda.createEvent(true);
    cuda.record(e0, stream);
    for (let r = 0; r < reps; r++) run();
    cuda.record(e1, stream); cuda.waitEvent(e1);
    const ms = cuda.elapsed(e0, e1) / reps;
    cuda.destroyEvent(e0); cuda.destroyEvent(e1);
    return ms;
  };
  const hostMs = time(enqueue, 10);
  const cg = cuda.capture(stream, enqueue);
  const graphMs = time(() => cuda.replay(cg, stream), 10);
  cuda.destroyGraph(cg);
  cuda.free(base);
  emit({ what: 'gradient all-reduce', program: `${prog} ${size}`, worldSize: 1, params: params.length, elements: total, MiB: +(total * 4 / 2 ** 20).toFixed(1), buckets: buckets.length, hostLaunchedMs: +hostMs.toFixed(3), graphMs: +graphMs.toFixed(3), graphNodes: cg.nodes });
}
comm.destroy();
