/**
 * @file Benchmark: Kiln's data-parallel training step (runtime/parallel/session.ts on CUDA: the
 * gradients program with its NCCL bucket all-reduces on a second stream inside the step's CUDA graph,
 * then the update program) as one rank of a job whose ranks bench/scaling.sh starts (KILN_RANK,
 * KILN_WORLD_SIZE, KILN_RENDEZVOUS; without them world size 1). Each spec's batch is the global batch
 * (each rank runs batch/W). At world size 1 the same step without data parallelism (one program)
 * runs first, from the same initial values, for the overhead and the check that the first losses
 * agree (the split programs compute the same step; bf16 autocast: 1e-3 relative). Steps are timed
 * by wall clock over back-to-back runs that fetch nothing, ended by one that fetches the loss. Rank 0
 * prints one JSON line per spec.
 *
 *   tsx bench/dataParallel.ts lightningdit:128 lightningdit:64:XL/1
 */
import { buildProgram } from '../cli/programs.ts';
import { numel } from '../ir/shape.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { backendByName } from '../runtime/backends.ts';
import { parallelEnv, pinLocalGpu } from '../runtime/parallel/env.ts';
import { ncclCandidates } from '../runtime/parallel/ncclLibrary.ts';
import { ParallelSession } from '../runtime/parallel/session.ts';
import { TcpGroup } from '../runtime/parallel/tcpGroup.ts';
import { Session, type StepSession } from '../runtime/session.ts';
import { feedsFor } from './feeds.ts';

const dp = parallelEnv() ?? { rank: 0, worldSize: 1, localRank: 0, rendezvous: '127.0.0.1:0', timeoutMs: 120_000, checkEvery: 0 };
if (process.env.KILN_WORLD_SIZE) pinLocalGpu(dp);
const steps = Number(process.env.KILN_BENCH_STEPS ?? 10);
const backend = backendByName('cuda');
const group = await TcpGroup.open({ rank: dp.rank, worldSize: dp.worldSize, address: dp.rendezvous, timeoutMs: dp.timeoutMs });

async function time(s: StepSession, feeds: Record<string, HostTensor>): Promise<{ ms: number; losses: number[] }> {
  const losses: number[] = [];
  for (let i = 0; i < 3; i++) losses.push((await s.run(feeds, ['loss'])).loss!.data[0]!);
  const t = performance.now();
  for (let i = 0; i < steps - 1; i++) await s.run(feeds, []);
  await s.run(feeds, ['loss']);
  return { ms: (performance.now() - t) / steps, losses };
}

for (const spec of process.argv.slice(2)) {
  const [name, b, size] = spec.split(':') as [string, string, string | undefined];
  const globalBatch = Number(b);
  const batch = globalBatch / dp.worldSize;
  const graph = buildProgram(name, { train: true, batch, size: size ?? (name === 'lightningdit' ? 'B/1' : undefined) });
  const init = new Map<string, HostTensor>();
  for (const i of graph.inputs) {
    if (i.kind !== 'param' && i.kind !== 'frozen') continue;
    const v = new Float32Array(numel(i.type.shape));
    for (let k = 0; k < v.length; k++) v[k] = Math.cos(k * 0.11) * 0.02;
    init.set(i.name, hostTensor(i.type.dtype, i.type.shape, v));
  }
  const feeds = feedsFor(graph);
  const res: Record<string, unknown> = { program: `${name}${size ? ` ${size}` : ''}`, globalBatch, perRankBatch: batch, worldSize: dp.worldSize };
  if (dp.worldSize === 1) {
    const t0 = performance.now();
    const plain = await Session.open(backend, graph, init);
    res.plainOpenS = +((performance.now() - t0) / 1000).toFixed(1);
    const p = await time(plain, feeds);
    plain.dispose();
    Object.assign(res, { plainStepMs: +p.ms.toFixed(3), plainLosses: p.losses });
  }
  const t1 = performance.now();
  const ps = await ParallelSession.open(backend, graph, init, {}, { group, ncclCandidates: ncclCandidates() });
  res.dpOpenS = +((performance.now() - t1) / 1000).toFixed(1);
  const d = await time(ps, feeds);
  Object.assign(res, { dpStepMs: +d.ms.toFixed(3), dpLosses: d.losses, how: ps.describe });
  if (res.plainStepMs) {
    res.dpOverheadPct = +((d.ms / (res.plainStepMs as number) - 1) * 100).toFixed(1);
    const pl = res.plainLosses as number[];
    res.lossesAgree = pl.every((l, i) => Math.abs(l - d.losses[i]!) <= 1e-3 * Math.abs(l));
  }
  res.samplesPerS = +(globalBatch / d.ms * 1000).toFixed(1);
  ps.dispose();
  if (dp.rank === 0) console.log(JSON.stringify(res));
}
await group.close();
