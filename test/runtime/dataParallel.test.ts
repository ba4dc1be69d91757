/**
 * Data-parallel training on the CPU backend (runtime/parallel/): the training step split at its
 * gradients composes to the whole step bit for bit (world size 1 through the same trainer); two ranks
 * over the TCP transport, each training on its shard of the global batch, log the losses of one
 * process with the same global batch and end with the same parameters (the debug checksum runs every
 * step, and names a rank whose state drifted); rank 1 writes nothing; a run stopped on 2 ranks resumes
 * on 1 and one stopped on 1 resumes on 2, with the single run's losses; bf16 gradients on the wire.
 *
 * Tolerance of the 2-rank vs 1-process losses: 1e-5 relative. Both compute the same math in f32; they
 * differ only in summation order (the global batch mean is the mean of two half-batch means, and every
 * gradient the mean of two half-batch gradients), a few ulps (~1e-7 relative) per step, which the
 * momentum carries from step to step (measured: 7e-8 at most over these 12 steps).
 */
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { makeSource } from '../../cli/jobs/load.ts';
import { type Job, parseJob } from '../../cli/jobs/schema.ts';
import { buildTask } from '../../cli/jobs/tasks.ts';
import { makeSchedule } from '../../runtime/schedule.ts';
import { train } from '../../runtime/train/trainer.ts';
import { TcpGroup } from '../../runtime/parallel/tcpGroup.ts';
import { freePort } from '../../runtime/parallel/launch.ts';
import { perRankBatch, shardSource } from '../../runtime/parallel/shard.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { dataParallelSteps } from '../../compiler/transforms/trainStep.ts';
import { ParallelSession } from '../../runtime/parallel/session.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

const STEPS = 12;
const JOB = parseJob({
  name: 'dp-test', model: { kind: 'mlp', hidden: [16] },
  data: { kind: 'fashion_mnist', limit: 128, normalize: { mean: 0.286, std: 0.353 } },
  // SGD, not AdamW: AdamW's update hardly depends on the gradients' scale, so a sum where a mean
  // belongs would go unseen; the clip threshold is above the norms, so clipping runs but scales by 1.
  optimizer: { kind: 'sgd', momentum: 0.9, weightDecay: 0.01 }, schedule: { kind: 'warmup_cosine', lr: 0.05, warmup: 3 },
  batchSize: 16, steps: STEPS, ema: { decay: 0.9 }, clipGradNorm: 50, keepCheckpoints: 1, seed: 3,
}, 'test');

async function runRank(dir: string, group?: TcpGroup, checkEvery = 0, o: { stopAt?: number; resume?: boolean } = {}, gradDtype?: 'bf16') {
  const W = group?.worldSize ?? 1, r = group?.rank ?? 0;
  const job: Job = { ...JOB, outputDir: dir, batchSize: perRankBatch(JOB.batchSize, W) };
  const source = group ? shardSource(makeSource(job, () => {}), r, W) : makeSource(job, () => {});
  const { task } = await buildTask({ job, backend: cpuBackend, precision: 'f32', source, log: () => {}, warn: () => {} });
  return train({ ...task, evaluate: undefined }, {
    backend: cpuBackend, totalSteps: STEPS, schedule: makeSchedule({ kind: 'warmup_cosine', lr: 0.05, warmup: 3, total: STEPS }), seed: job.seed, runDir: dir, config: job,
    intervals: { log: 100, checkpoint: 100 }, keepCheckpoints: 1, log: () => {}, warn: () => {}, ...o,
    parallel: group ? { group, checkEvery, bucketBytes: 4096, gradDtype } : undefined,
  });
}

async function groups(n: number): Promise<TcpGroup[]> {
  const port = await freePort();
  return Promise.all([...Array(n).keys()].map((rank) => TcpGroup.open({ rank, worldSize: n, address: `127.0.0.1:${port}`, timeoutMs: 20_000 })));
}

const finalParams = (dir: string) => loadSafetensors(join(dir, 'checkpoints', `step-${String(STEPS).padStart(8, '0')}`, 'model.safetensors')).tensors;

describe('data parallelism on the CPU backend', () => {
  it('the gradients and update programs are the training step cut in two', async () => {
    const job: Job = { ...JOB, outputDir: '/nonexistent' };
    const { task } = await buildTask({ job, backend: cpuBackend, precision: 'f32', source: makeSource(job, () => {}), log: () => {}, warn: () => {} });
    const parts = dataParallelSteps(task.graph);
    expect(parts.gradients.outputs.map((o) => o.name)).toEqual(['loss', 'accuracy', ...parts.params.map((p) => `grad.${p}`)]);
    expect(parts.update.inputs.filter((i) => i.kind === 'data').map((i) => i.name)).toEqual(['lr']); // none of the forward's data
    // each resident value lives in one program: optimizer state and EMA in the update, none in the gradients
    expect(parts.gradients.inputs.filter((i) => i.kind !== 'data').map((i) => i.name).sort()).toEqual([...parts.params].sort());
    expect(parts.gradients.inputs.some((i) => i.name === 'lr')).toBe(false);
    expect(parts.update.outputs.map((o) => o.name).sort()).toEqual(task.graph.outputs.map((o) => o.name).filter((n) => n.startsWith('next.') || n === 'grad_norm').sort());
    expect(() => dataParallelSteps(parts.update)).toThrow(/was not made by trainStep/);
    const half = dataParallelSteps(task.graph, { gradDtype: 'bf16' });
    for (const p of half.params) {
      expect(half.gradients.typeOf(half.gradients.output(`grad.${p}`)!.id).dtype).toBe('bf16');
      expect(half.update.inputByName(`grad.${p}`)!.type.dtype).toBe('bf16');
    }
  });

  it('the debug checksum names a rank whose state differs from rank 0\'s', async () => {
    const job: Job = { ...JOB, outputDir: '/nonexistent', batchSize: 8 };
    const { task } = await buildTask({ job, backend: cpuBackend, precision: 'f32', source: makeSource(job, () => {}), log: () => {}, warn: () => {} });
    const gs = await groups(2);
    const sessions = await Promise.all(gs.map((group) => ParallelSession.open(cpuBackend, task.graph, task.initial, { precision: 'f32' }, { group, checkEvery: 1 })));
    // rank 1's EMA drifts (as a non-deterministic update would make it); the parameters stay equal
    const ema = (await sessions[1]!.read(['state'])).get(`ema.${task.paramNames[0]}`)!;
    await sessions[1]!.load(new Map([[`ema.${task.paramNames[0]}`, { ...ema, data: (ema.data as Float32Array).map((v) => v + 1e-3) }]]));
    const batch = await makeSource(job, () => {}).load(0, 0);
    const feeds = { ...task.feeds(batch, 0), lr: hostTensor('f32', [], [0.01]) } as Record<string, HostTensor>;
    const results = await Promise.allSettled(sessions.map((s) => s.run(feeds, ['loss'])));
    for (const r of results) expect((r as PromiseRejectedResult).reason?.message).toMatch(/after 1 steps the parameters\/optimizer state of rank\(s\) 1 differ from rank 0's/);
    for (const s of sessions) s.dispose();
    await Promise.all(gs.map((g) => g.close()));
  });

  it('world size 1 through the split equals the single process bit for bit; 2 ranks match it within 1e-5 and agree exactly; resume on another number of ranks; bf16 gradients', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-dp-'));
    const single = await runRank(join(root, 'single'));
    const [g1] = await groups(1);
    const one = await runRank(join(root, 'one'), g1, 1);
    await g1!.close();
    for (let i = 0; i < STEPS; i++) expect(Object.is(one.losses[i], single.losses[i]), `step ${i + 1}: ${one.losses[i]} vs ${single.losses[i]}`).toBe(true);

    const gs = await groups(2);
    const [r0, r1] = await Promise.all(gs.map((g, r) => runRank(join(root, `rank${r}`), g, 1)));
    await Promise.all(gs.map((g) => g.close()));
    expect(r0!.losses).toHaveLength(STEPS);
    expect(r1!.losses).toEqual(r0!.losses); // the averaged loss, on every rank
    const gap = Math.max(...single.losses.map((l, i) => Math.abs(r0!.losses[i]! - l) / Math.abs(l)));
    expect(gap, `largest relative loss gap over ${STEPS} steps: ${gap.toExponential(2)}`).toBeLessThan(1e-5);
    expect(single.lastLoss).toBeLessThan(single.firstLoss);
    // rank 0 alone writes the run directory
    expect(existsSync(join(root, 'rank1'))).toBe(false);
    const a = finalParams(join(root, 'single')), b = finalParams(join(root, 'rank0'));
    for (const [k, v] of a) {
      const x = v.data as Float32Array, y = b.get(k)!.data as Float32Array;
      const d = Math.max(...Array.from(x, (xv, i) => Math.abs(xv - y[i]!)));
      expect(d, k).toBeLessThan(1e-4);
    }

    // resume on another number of ranks: 2 ranks stop at step 5, one process resumes their checkpoint;
    // one process stops at step 5, 2 ranks resume it: both end with the single run's losses
    const ab = join(root, 'two-then-one');
    const gs2 = await groups(2);
    await Promise.all(gs2.map((g, r) => runRank(r === 0 ? ab : join(root, 'unused'), g, 0, { stopAt: 5 })));
    await Promise.all(gs2.map((g) => g.close()));
    const rest = await runRank(ab, undefined, 0, { resume: true });
    expect(rest.startStep).toBe(5);
    const ba = join(root, 'one-then-two');
    await runRank(ba, undefined, 0, { stopAt: 5 });
    const gs3 = await groups(2);
    const [rest0] = await Promise.all(gs3.map((g, r) => runRank(r === 0 ? ba : join(root, 'unused'), g, 0, { resume: true })));
    await Promise.all(gs3.map((g) => g.close()));
    expect(rest0!.startStep).toBe(5);
    for (const r of [rest, rest0!]) {
      const g2 = Math.max(...r.losses.map((l, i) => Math.abs(l - single.losses[5 + i]!) / Math.abs(single.losses[5 + i]!)));
      expect(g2, r === rest ? 'two then one' : 'one then two').toBeLessThan(1e-5);
    }

    // bf16 gradients on the wire (KILN_DP_GRAD_DTYPE=bf16): each gradient value rounded to 8 bits of
    // mantissa (relative error ≤ 2^-9) before the mean; the losses stay within 1e-2 of the f32 run
    const gs4 = await groups(2);
    const [h0] = await Promise.all(gs4.map((g, r) => runRank(join(root, `bf16-${r}`), g, 1, {}, 'bf16')));
    await Promise.all(gs4.map((g) => g.close()));
    const g3 = Math.max(...single.losses.map((l, i) => Math.abs(h0!.losses[i]! - l) / Math.abs(l)));
    expect(g3).toBeLessThan(1e-2);
    expect(g3).toBeGreaterThan(0); // the rounding happened
  }, 120_000);
});
