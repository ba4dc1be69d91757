/**
 * @file A data-parallel rank's configuration from its environment, for `kiln train --gpus N` (which
 * sets it for each process it starts, runtime/parallel/launch.ts) and for external launchers:
 *
 *   KILN_WORLD_SIZE   number of ranks (processes, one GPU each) in the job      (torchrun: WORLD_SIZE)
 *   KILN_RANK         this process's rank, 0..world size − 1                     (RANK)
 *   KILN_LOCAL_RANK   its GPU on this host (default: the rank)                   (LOCAL_RANK)
 *   KILN_RENDEZVOUS   host:port where rank 0 listens; every rank connects there  (MASTER_ADDR:MASTER_PORT)
 *   KILN_DIST_TIMEOUT_S  seconds a rank waits for the others before the job fails (default 300)
 *   KILN_DP_CHECK_EVERY  debug: compare every rank's parameters and state every N steps (default 0: off)
 *   KILN_DP_GRAD_DTYPE   bf16: all-reduce the gradients in bf16 (default: f32, the parameters' dtype)
 *
 * No KILN_WORLD_SIZE (nor WORLD_SIZE): one process, no data parallelism. Anything inconsistent (a rank
 * without a world size, a world size without a rank or a rendezvous, a rank out of range, a number
 * that is not one) is a ParallelError naming the variable. The NCCL unique id is not in the
 * environment: rank 0 makes it and sends it to every rank over the rendezvous connection, so one
 * host and several hosts are the same code (several hosts: KILN_RENDEZVOUS is rank 0's host).
 */
import { ParallelError, parseAddress } from './tcpGroup.ts';

export interface ParallelEnv {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly rendezvous: string;
  readonly timeoutMs: number;
  readonly checkEvery: number;
  readonly gradDtype?: 'bf16';
}

type Env = Readonly<Record<string, string | undefined>>;

function count(env: Env, names: readonly string[], min: number): { value: number; name: string } | undefined {
  for (const n of names) {
    const v = env[n];
    if (v === undefined || v === '') continue;
    if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new ParallelError(`${n}=${v} is not an integer ≥ ${min}`);
    return { value: Number(v), name: n };
  }
  return undefined;
}

/** The rank's configuration, or undefined for a single-process run (see the file comment). */
export function parallelEnv(env: Env = process.env): ParallelEnv | undefined {
  const world = count(env, ['KILN_WORLD_SIZE', 'WORLD_SIZE'], 1);
  const rank = count(env, ['KILN_RANK', 'RANK'], 0);
  if (!world) {
    if (rank) throw new ParallelError(`${rank.name}=${rank.value} is set but KILN_WORLD_SIZE is not: a data-parallel rank needs the number of ranks too`);
    return undefined;
  }
  if (!rank) throw new ParallelError(`${world.name}=${world.value} is set but KILN_RANK is not: every process of a data-parallel job needs its rank, 0..${world.value - 1}`);
  if (rank.value >= world.value) throw new ParallelError(`${rank.name}=${rank.value} is not below ${world.name}=${world.value} (ranks are 0..${world.value - 1})`);
  const local = count(env, ['KILN_LOCAL_RANK', 'LOCAL_RANK'], 0)?.value ?? rank.value;
  let rendezvous = env.KILN_RENDEZVOUS ?? (env.MASTER_ADDR && env.MASTER_PORT ? `${env.MASTER_ADDR}:${env.MASTER_PORT}` : undefined);
  if (!rendezvous) {
    if (world.value > 1) throw new ParallelError(`${world.name}=${world.value} is set but KILN_RENDEZVOUS is not: set it to host:port of rank 0 (the same on every rank), or MASTER_ADDR and MASTER_PORT`);
    rendezvous = '127.0.0.1:0';
  }
  parseAddress(rendezvous, 'KILN_RENDEZVOUS');
  const timeout = env.KILN_DIST_TIMEOUT_S === undefined || env.KILN_DIST_TIMEOUT_S === '' ? 300 : Number(env.KILN_DIST_TIMEOUT_S);
  if (!(timeout > 0)) throw new ParallelError(`KILN_DIST_TIMEOUT_S=${env.KILN_DIST_TIMEOUT_S} is not a positive number of seconds`);
  const check = count(env, ['KILN_DP_CHECK_EVERY'], 0)?.value ?? 0;
  const gd = env.KILN_DP_GRAD_DTYPE;
  if (gd && gd !== 'bf16' && gd !== 'f32') throw new ParallelError(`KILN_DP_GRAD_DTYPE=${gd}: expected bf16 or f32`);
  return { rank: rank.value, worldSize: world.value, localRank: local, rendezvous, timeoutMs: timeout * 1000, checkEvery: check, ...(gd === 'bf16' ? { gradDtype: 'bf16' as const } : {}) };
}

/**
 * Make this process see only its GPU (CUDA_VISIBLE_DEVICES = the local rank's entry of the list it
 * was given, or the local rank), before CUDA starts: every rank then uses its device 0.
 */
export function pinLocalGpu(p: ParallelEnv, env: Record<string, string | undefined> = process.env): void {
  const given = env.CUDA_VISIBLE_DEVICES;
  if (given === undefined || given === '') {
    env.CUDA_VISIBLE_DEVICES = String(p.localRank);
    return;
  }
  const list = given.split(',').map((s) => s.trim()).filter(Boolean);
  if (p.localRank >= list.length) throw new ParallelError(`KILN_LOCAL_RANK=${p.localRank} but CUDA_VISIBLE_DEVICES=${given} lists ${list.length} GPU(s)`);
  env.CUDA_VISIBLE_DEVICES = list[p.localRank]!;
}
