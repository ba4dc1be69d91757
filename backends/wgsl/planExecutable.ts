/**
 * @file Runs a WgslPlan (plan.ts) on a GPUDevice: the browser half of the WGSL backend. It creates the
 * plan's GPU buffers, uploads its constants, compiles its dispatches into pipelines (reporting WGSL
 * compile errors with the kernel and line), and runs like WgslExecutable: resident inputs written once,
 * data inputs written per run, every dispatch encoded into one compute pass, the requested outputs
 * copied into one read-back buffer, then the `next.` updates, one submission. Imports only plain modules (no Node, no compiler),
 * so it runs in a page as it runs under Dawn in Node (test/web/planExecutable.test.ts checks that it
 * computes exactly what WgslExecutable computes).
 */
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { decodeValues, deviceByteSize, encodeValues } from './codec.ts';
import { WGSL_PLAN_FORMAT, type WgslPlan, type WgslPlanTensor } from './plan.ts';

const ALIGN = 256;
const align = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

/** Device limits a plan needs, checked against a device (names the first limit the device lacks). */
export function planLimitShortfall(plan: WgslPlan, limits: Record<string, unknown>): string | undefined {
  for (const [k, need] of Object.entries(plan.limits)) {
    const have = limits[k];
    if (typeof have === 'number' && have < need) return `${k}: the program needs ${need}, the device offers ${have}`;
  }
  return undefined;
}

export class WgslPlanExecutable {
  private readonly buffers: GPUBuffer[];
  private readonly byName = new Map<string, WgslPlanTensor>();
  private readonly outByName = new Map<string, WgslPlanTensor>();
  private readonly written = new Set<string>();
  private steps: Array<{ pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; workgroups: readonly [number, number, number] }> = [];
  private readback?: GPUBuffer;
  private updateTmp?: GPUBuffer;

  private constructor(readonly plan: WgslPlan, private readonly device: GPUDevice) {
    if (plan.format !== WGSL_PLAN_FORMAT) throw new KilnError(`wgsl plan ${plan.name}: format '${String(plan.format)}', this runtime reads '${WGSL_PLAN_FORMAT}'`);
    const short = planLimitShortfall(plan, device.limits as unknown as Record<string, unknown>);
    if (short) throw new KilnError(`wgsl plan ${plan.name}: the device is too small (${short})`);
    this.buffers = plan.gpuBuffers.map((size, i) => device.createBuffer({ label: `${plan.name}:${i}`, size: Math.max(ALIGN, size), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }));
    for (const t of plan.inputs) this.byName.set(t.name, t);
    for (const t of plan.outputs) this.outByName.set(t.name, t);
    for (const c of plan.consts) this.upload(c, c.values);
  }

  /** Create the buffers and compile every dispatch (all pipelines in parallel). */
  static async create(device: GPUDevice, plan: WgslPlan): Promise<WgslPlanExecutable> {
    const e = new WgslPlanExecutable(plan, device);
    // Dispatches with an `offsets` table (position-independent kernels) bind it as a uniform after their storage windows.
    const offsetsOf = (d: WgslPlan['dispatches'][number]) => (d as { offsets?: readonly number[] }).offsets;
    const layouts = new Map<string, GPUBindGroupLayout>();
    // Storage windows marked readOnly (the dispatch writes nothing in that GPU buffer) are 'read-only-storage'.
    const kinds = (d: WgslPlan['dispatches'][number]) => d.bindings.map((b) => (b.readOnly ? 'r' : 'w')).join('');
    const layoutFor = (kind: string, uniform: boolean) => {
      const n = kind.length;
      const key = `${kind}${uniform ? 'u' : ''}`;
      let l = layouts.get(key);
      if (!l) {
        const entries: GPUBindGroupLayoutEntry[] = Array.from({ length: n }, (_, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: kind[i] === 'r' ? ('read-only-storage' as const) : ('storage' as const) } }));
        if (uniform) entries.push({ binding: n, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' as const } });
        layouts.set(key, (l = device.createBindGroupLayout({ entries })));
      }
      return l;
    };
    const modules = new Map<string, Promise<GPUComputePipeline>>();
    const pipelineFor = (source: string, name: string, kind: string, uniform: boolean) => {
      const key = `${kind}${uniform ? 'u' : ''}\n${source}`;
      let p = modules.get(key);
      if (!p) {
        p = (async () => {
          const module = device.createShaderModule({ code: source, label: name });
          const info = await module.getCompilationInfo();
          const errors = info.messages.filter((m) => m.type === 'error');
          if (errors.length) {
            const lines = source.split('\n');
            throw new KilnError(`wgsl plan ${plan.name}, kernel ${name}: WGSL does not compile:\n  ${errors.slice(0, 3).map((m) => `line ${m.lineNum}: ${m.message}\n    ${lines[m.lineNum - 1]?.trim() ?? ''}`).join('\n  ')}`);
          }
          return device.createComputePipelineAsync({ label: name, layout: device.createPipelineLayout({ bindGroupLayouts: [layoutFor(kind, uniform)] }), compute: { module, entryPoint: 'main' } });
        })();
        modules.set(key, p);
      }
      return p;
    };
    const pipes = await Promise.all(plan.dispatches.map((d) => pipelineFor(d.source, d.name, kinds(d), offsetsOf(d) !== undefined)));
    // The offsets tables of all dispatches, one 256-byte-aligned slice each, in one uniform buffer.
    const slice = (o: readonly number[]) => align(16 * Math.max(1, Math.ceil(o.length / 4)));
    const uniformBytes = plan.dispatches.reduce((t, d) => t + (offsetsOf(d) ? slice(offsetsOf(d)!) : 0), 0);
    let uniform: GPUBuffer | undefined;
    let table: Int32Array | undefined;
    if (uniformBytes > 0) {
      uniform = device.createBuffer({ label: `${plan.name}:offsets`, size: uniformBytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      e.buffers.push(uniform);
      table = new Int32Array(uniformBytes / 4);
    }
    let at = 0;
    e.steps = plan.dispatches.map((d, i) => {
      const entries: GPUBindGroupEntry[] = d.bindings.map((b, j) => ({ binding: j, resource: { buffer: e.buffers[b.gpu]!, offset: b.offset, size: b.size } }));
      const offs = offsetsOf(d);
      if (offs) {
        table!.set(offs, at / 4);
        entries.push({ binding: d.bindings.length, resource: { buffer: uniform!, offset: at, size: slice(offs) } });
        at += slice(offs);
      }
      return { pipeline: pipes[i]!, workgroups: d.workgroups, bindGroup: device.createBindGroup({ layout: layoutFor(kinds(d), offs !== undefined), entries }) };
    });
    if (uniform) device.queue.writeBuffer(uniform, 0, table!.buffer, 0, uniformBytes);
    return e;
  }

  /** The program's inputs (data ones are fed per run, the others written once). */
  get inputs(): readonly WgslPlanTensor[] {
    return this.plan.inputs;
  }

  private upload(t: { dtype: WgslPlanTensor['dtype']; gpu: number; offset: number }, values: ArrayLike<number>): void {
    const data = encodeValues(t.dtype, values);
    this.device.queue.writeBuffer(this.buffers[t.gpu]!, t.offset, data.buffer, data.byteOffset, data.byteLength);
  }

  private checked(t: WgslPlanTensor, x: HostTensor): void {
    if (x.dtype !== t.dtype || x.shape.length !== t.shape.length || x.shape.some((d, i) => d !== t.shape[i]))
      throw new KilnError(`wgsl plan ${this.plan.name}: input '${t.name}' expects ${t.dtype}[${t.shape.join(',')}], got ${x.dtype}[${x.shape.join(',')}]`);
  }

  /** Set a resident input (param, frozen, state). */
  write(name: string, x: HostTensor): void {
    const t = this.byName.get(name);
    if (!t) throw new KilnError(`wgsl plan ${this.plan.name}: no input '${name}'`);
    if (t.kind === 'data') throw new KilnError(`wgsl plan ${this.plan.name}: '${name}' is a data input; feed it to run()`);
    this.checked(t, x);
    this.upload(t, x.data as ArrayLike<number>);
    this.written.add(name);
  }

  /** Run once with the data inputs `feeds`; returns the outputs named in `fetch` (default all). */
  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    for (const k of Object.keys(feeds)) if (!this.byName.has(k)) throw new KilnError(`wgsl plan ${this.plan.name}: feed '${k}' is not an input`);
    for (const t of this.plan.inputs) {
      if (t.kind !== 'data') {
        if (!this.written.has(t.name)) throw new KilnError(`wgsl plan ${this.plan.name}: resident input '${t.name}' has not been written`);
        continue;
      }
      const x = feeds[t.name];
      if (!x) throw new KilnError(`wgsl plan ${this.plan.name}: input '${t.name}' (${t.dtype}[${t.shape.join(',')}]) was not fed`);
      this.checked(t, x);
      this.upload(t, x.data as ArrayLike<number>);
    }
    const want = (fetch ?? this.plan.outputs.map((o) => o.name)).map((n) => {
      const o = this.outByName.get(n);
      if (!o) throw new KilnError(`wgsl plan ${this.plan.name}: no output '${n}' to fetch`);
      return o;
    });
    const numel = (t: WgslPlanTensor) => t.shape.reduce((a, b) => a * b, 1);
    const bytes = (t: WgslPlanTensor) => align(numel(t) * deviceByteSize(t.dtype), 4);
    const offs: number[] = [];
    let total = 0;
    for (const t of want) {
      offs.push(total);
      total += align(bytes(t));
    }
    if (total > 0 && (!this.readback || this.readback.size < total)) {
      this.readback?.destroy();
      this.readback = this.device.createBuffer({ label: `${this.plan.name}:readback`, size: align(total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
    this.device.pushErrorScope('validation');
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of this.steps) {
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
    }
    pass.end();
    want.forEach((t, i) => bytes(t) > 0 && enc.copyBufferToBuffer(this.buffers[t.gpu]!, t.offset, this.readback!, offs[i]!, bytes(t)));
    this.encodeUpdates(enc);
    this.device.queue.submit([enc.finish()]);
    const err = await this.device.popErrorScope();
    if (err) throw new KilnError(`wgsl plan ${this.plan.name}: ${err.message}`);
    const out: Record<string, HostTensor> = {};
    if (total === 0) {
      await this.device.queue.onSubmittedWorkDone();
      for (const t of want) out[t.name] = hostTensor(t.dtype, t.shape, []);
      return out;
    }
    await this.readback!.mapAsync(GPUMapMode.READ, 0, align(total));
    const raw = this.readback!.getMappedRange(0, align(total)).slice(0);
    this.readback!.unmap();
    want.forEach((t, i) => (out[t.name] = hostTensor(t.dtype, t.shape, decodeValues(t.dtype, raw, offs[i]!, numel(t)))));
    return out;
  }

  /** The `next.` updates (after the outputs were copied out): staged ones through a temporary buffer, as WgslExecutable does. */
  private encodeUpdates(enc: GPUCommandEncoder): void {
    const ups = this.plan.updates ?? [];
    if (!ups.length) return;
    const staged = ups.filter((u) => u.staged);
    const tmpOff: number[] = [];
    let total = 0;
    for (const u of staged) {
      tmpOff.push(total);
      total += align(u.bytes);
    }
    if (total > 0 && (!this.updateTmp || this.updateTmp.size < total)) {
      this.updateTmp?.destroy();
      this.updateTmp = this.device.createBuffer({ label: `${this.plan.name}:updates`, size: align(total), usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    }
    const buf = (g: number) => this.buffers[g]!;
    staged.forEach((u, i) => u.bytes > 0 && enc.copyBufferToBuffer(buf(u.src.gpu), u.src.offset, this.updateTmp!, tmpOff[i]!, u.bytes));
    for (const u of ups) if (!u.staged && u.bytes > 0) enc.copyBufferToBuffer(buf(u.src.gpu), u.src.offset, buf(u.dst.gpu), u.dst.offset, u.bytes);
    staged.forEach((u, i) => u.bytes > 0 && enc.copyBufferToBuffer(this.updateTmp!, tmpOff[i]!, buf(u.dst.gpu), u.dst.offset, u.bytes));
  }

  dispose(): void {
    for (const b of this.buffers.splice(0)) b.destroy();
    this.readback?.destroy();
    this.updateTmp?.destroy();
    this.readback = this.updateTmp = undefined;
  }
}
