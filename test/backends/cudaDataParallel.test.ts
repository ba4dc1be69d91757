/**
 * The CUDA data-parallel step without a GPU (backends/cuda/dataParallel.ts over the fake driver of
 * test/support/fakeCuda.ts and a fake NCCL that records its calls in the same log):
 *  - buckets follow the backward: each bucket's all-reduces are enqueued right after the kernel that
 *    last writes its gradients, on the comm stream (a cuStreamWaitEvent first), one NCCL group per
 *    bucket, from the gradients program's output buffers into the update program's grad.* buffers;
 *    the first bucket goes out before the backward's last kernel (the overlap);
 *  - the update program reads the gradients program's parameters (same addresses) on the same stream;
 *  - the second run captures the all-reduces into the gradients program's CUDA graph; from the third
 *    run on, a step is two cuGraphLaunches and no NCCL call from the host;
 *  - gradientBuckets cuts in backward order at the size cap.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CudaParallelStep, gradientBuckets } from '../../backends/cuda/dataParallel.ts';
import { CudaExecutable } from '../../backends/cuda/executable.ts';
import { NcclComm, type NcclApi } from '../../backends/cuda/nccl.ts';
import { compile } from '../../compiler/compile.ts';
import { dataParallelSteps } from '../../compiler/transforms/trainStep.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { TcpGroup } from '../../runtime/parallel/tcpGroup.ts';
import { defaultResident } from '../../runtime/session.ts';
import { LR, mlpData, mlpTrainStep } from '../support/compilerPrograms.ts';
import { fakeCuda } from '../support/fakeCuda.ts';

const config = { inputs: 12, hidden: [16, 8], classes: 5 };
const B = 8;

function fakeNccl(calls: string[], reduces: Array<{ send: bigint; recv: bigint; count: number; stream: unknown }>): NcclApi {
  const rec = (name: string, f: (...a: unknown[]) => unknown = () => 0) => (...a: unknown[]) => (calls.push(`nccl.${name}`), f(...a));
  return {
    getVersion: rec('getVersion', (v) => (((v as number[])[0] = 22703), 0)),
    getUniqueId: rec('getUniqueId'),
    commInitRank: rec('commInitRank', (c) => (((c as unknown[])[0] = { comm: 1 }), 0)),
    allReduce: rec('allReduce', (send, recv, count, _d, _op, _c, stream) => (reduces.push({ send: send as bigint, recv: recv as bigint, count: Number(count), stream }), 0)),
    broadcast: rec('broadcast'), groupStart: rec('groupStart'), groupEnd: rec('groupEnd'),
    commDestroy: rec('commDestroy'), commAbort: rec('commAbort'), asyncError: rec('asyncError', (_c, r) => (((r as number[])[0] = 0), 0)),
    errorString: () => 'fake', lastError: () => '',
  };
}

describe('CUDA data parallelism (fake driver, fake NCCL)', () => {
  it('gradient buckets are all-reduced after their last writer, on the comm stream, and captured with the step', async () => {
    const { model, graph } = mlpTrainStep(config, B);
    const parts = dataParallelSteps(graph);
    const fake = fakeCuda();
    const options = { cublas: false, gemmTuning: false, cacheDir: mkdtempSync(join(tmpdir(), 'kiln-fake-dp-')) };
    const a = new CudaExecutable(parts.gradients, compile(parts.gradients).program, options, { driver: fake.driver });
    const init = model.initState(1);
    for (const [k, v] of defaultResident(parts.gradients, init)) await a.write(k, v);
    const bind = new Map(parts.params.map((p) => [p, a.address(p).ptr] as const));
    const b = new CudaExecutable(parts.update, compile(parts.update).program, options, { driver: fake.driver, bind, stream: a.stepStream });
    for (const [k, v] of defaultResident(parts.update, init)) if (!bind.has(k)) await b.write(k, v);
    for (const p of parts.params) expect(b.address(p).ptr).toBe(a.address(p).ptr);

    const reduces: Array<{ send: bigint; recv: bigint; count: number; stream: unknown }> = [];
    const api = fakeNccl(fake.calls, reduces);
    const group = await TcpGroup.open({ rank: 0, worldSize: 1, address: '127.0.0.1:0' });
    const comm = NcclComm.init(api, NcclComm.uniqueId(api), 1, 0);
    const step = new CudaParallelStep(a, b, comm, { backend: undefined as never, parts, initialGradients: new Map(), initialUpdate: new Map(), compile: undefined as never, group, nccl: api, bucketBytes: 200, driver: fake.driver });
    expect(step.buckets.length).toBeGreaterThan(1);
    const after = step.buckets.map((k) => k.after);
    expect(after).toEqual([...after].sort((x, y) => x - y));
    expect(step.buckets.flatMap((k) => k.names).sort()).toEqual(parts.params.map((p) => `grad.${p}`).sort());

    const feeds = () => ({ ...mlpData(config, B, 1), lr: hostTensor('f32', [], [LR]) });
    // run 1: host launches; the all-reduces interleave with the backward's kernels
    let at = fake.calls.length;
    await step.run(feeds(), ['loss']);
    const run1 = fake.calls.slice(at);
    expect(run1.filter((c) => c === 'nccl.allReduce')).toHaveLength(parts.params.length);
    expect(run1.filter((c) => c === 'nccl.groupStart')).toHaveLength(step.buckets.length);
    expect(run1.filter((c) => c === 'cuStreamWaitEvent')).toHaveLength(step.buckets.length + 1);
    const firstReduce = run1.indexOf('nccl.allReduce');
    const aLaunches = run1.slice(0, run1.lastIndexOf('nccl.allReduce')).filter((c) => c === 'cuLaunchKernel').length;
    expect(run1.indexOf('cuStreamWaitEvent')).toBeLessThan(firstReduce);
    const waits = run1.flatMap((c, i) => (c === 'cuStreamWaitEvent' ? [i] : []));
    const joinAt = waits[step.buckets.length]!; // the main stream waits for the comm stream at the gradients step's end
    expect(run1.slice(firstReduce, joinAt).filter((c) => c === 'cuLaunchKernel').length).toBeGreaterThan(0); // backward kernels after the first bucket: overlap
    expect(aLaunches).toBeGreaterThan(0);
    for (const r of reduces) {
      const name = [...parts.params].find((p) => a.address(`grad.${p}`).ptr === r.send)!;
      expect(name, `send ${r.send}`).toBeDefined();
      expect(r.recv).toBe(b.address(`grad.${name}`).ptr);
      expect(r.count).toBe(a.address(`grad.${name}`).numel);
      expect(r.stream).not.toBe(a.stepStream);
    }
    // run 2: captured (the NCCL calls between begin and end capture of the gradients program)
    at = fake.calls.length;
    await step.run(feeds(), []);
    const run2 = fake.calls.slice(at);
    const begin = run2.indexOf('cuStreamBeginCapture'), end = run2.indexOf('cuStreamEndCapture');
    expect(begin).toBeGreaterThanOrEqual(0);
    expect(run2.slice(begin, end).filter((c) => c === 'nccl.allReduce')).toHaveLength(parts.params.length);
    // run 3: two graph launches, nothing else from the host but the feeds
    at = fake.calls.length;
    await step.run(feeds(), []);
    const run3 = fake.calls.slice(at);
    expect(run3.filter((c) => c === 'cuGraphLaunch')).toHaveLength(2);
    expect(run3.filter((c) => c.startsWith('nccl.allReduce') || c === 'cuLaunchKernel')).toHaveLength(0);
    step.dispose();
    await group.close();
  });

  it('gradientBuckets: backward order, cut once a bucket reaches the cap', () => {
    const g = [{ name: 'a', after: 9, bytes: 60 }, { name: 'b', after: 3, bytes: 60 }, { name: 'c', after: 5, bytes: 60 }, { name: 'd', after: 7, bytes: 10 }];
    expect(gradientBuckets(g, 100)).toEqual([{ names: ['b', 'c'], after: 5, bytes: 120 }, { names: ['d', 'a'], after: 9, bytes: 70 }]);
    expect(gradientBuckets(g, 1).map((k) => k.names)).toEqual([['b'], ['c'], ['d'], ['a']]);
  });
});
