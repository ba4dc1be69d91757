/**
 * @file A velocity model compiled as a field v(x, t | y), with or without classifier-free guidance
 * (one model call on [x, x] with labels [y, null]: v_u + w·(v_c − v_u), models/flowMatching.ts's
 * guidedVelocity), for host-side solvers (odeSolvers.ts). Two graphs, traced and compiled on first use,
 * each holding the parameters resident.
 */
import type { Backend, Executable } from '../../backends/backend.ts';
import { trace } from '../../compiler/dsl/index.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { compileOn } from '../../runtime/compile.ts';
import { type VelocityModel, guidedVelocity, latentShape } from '../flowMatching.ts';

export class VelocityField {
  private readonly exes = new Map<boolean, Promise<Executable>>();

  constructor(
    readonly backend: Backend,
    readonly model: VelocityModel,
    readonly params: ReadonlyMap<string, HostTensor>,
    readonly batch: number,
  ) {}

  private exe(guided: boolean): Promise<Executable> {
    let e = this.exes.get(guided);
    if (!e) {
      const shape = [this.batch, ...latentShape(this.model)];
      const g = trace(guided ? 'velocity_cfg' : 'velocity', (tc) => {
        const x = tc.input('x', shape);
        const t = tc.input('t', []);
        const y = tc.input('y', [this.batch], 'i32');
        return { v: guided ? guidedVelocity(this.model, x, t, y, tc.input('cfg_scale', [])) : this.model.forward(x, t, y, { train: false }) };
      }, { params: this.model });
      e = (async () => {
        const exe = await compileOn(this.backend, g);
        for (const i of exe.graph.inputs) {
          if (i.kind !== 'param' && i.kind !== 'frozen') continue;
          const v = this.params.get(i.name);
          if (!v) throw new KilnError(`VelocityField: no value for parameter '${i.name}'`);
          await exe.write(i.name, v);
        }
        return exe;
      })();
      this.exes.set(guided, e);
    }
    return e;
  }

  /** v at (x, t) for labels y; `scale` given: the guided velocity with that scale (1 included). */
  async velocity(x: HostTensor, t: number, y: HostTensor, scale?: number): Promise<HostTensor> {
    const feeds: Record<string, HostTensor> = { x, y, t: hostTensor('f32', [], [t]) };
    if (scale !== undefined) feeds.cfg_scale = hostTensor('f32', [], [scale]);
    return (await (await this.exe(scale !== undefined)).run(feeds, ['v'])).v!;
  }

  dispose(): void {
    for (const e of this.exes.values()) void e.then((x) => x.dispose(), () => undefined);
    this.exes.clear();
  }
}
