/**
 * @file A Session holds one compiled program and its resident state (parameters, optimizer
 * moments, EMA, step counter) on a backend. Only data inputs go in per run and only requested
 * outputs come back; `next.` outputs update the state in place.
 */
import type { Backend, Executable } from '../backends/backend.ts';
import { KilnError } from '../ir/errors.ts';
import type { Graph, InputKind } from '../ir/graph.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { type CompileOnOptions, compileOn } from './compile.ts';

/**
 * Initial values for resident inputs that `initial` does not give: `ema.<p>` starts as a copy of
 * parameter p; everything else (optimizer moments, step counter) starts at zero.
 */
export function defaultResident(graph: Graph, initial: ReadonlyMap<string, HostTensor>): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const i of graph.inputs) {
    if (i.kind === 'data') continue;
    const given = initial.get(i.name);
    if (given) out.set(i.name, given);
    else if (i.name.startsWith('ema.') && initial.has(i.name.slice(4))) out.set(i.name, initial.get(i.name.slice(4))!);
    else if (i.kind === 'state') out.set(i.name, hostTensor(i.type.dtype, i.type.shape));
    else throw new KilnError(`graph ${graph.name}: no initial value for parameter '${i.name}'`);
  }
  return out;
}

/**
 * What the trainer and its hooks use of a session: runs, and the resident state read and written by
 * name. Session implements it for one program; runtime/parallel/session.ts ParallelSession for a
 * data-parallel rank's two programs.
 */
export interface StepSession {
  readonly graph: Graph;
  run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>>;
  read(kinds?: readonly InputKind[]): Promise<Map<string, HostTensor>>;
  load(values: ReadonlyMap<string, HostTensor>): Promise<void>;
  dispose(): void;
}

export class Session implements StepSession {
  private constructor(readonly exe: Executable) {}

  /** A session over an executable made elsewhere (its resident inputs written by the caller). */
  static of(exe: Executable): Session {
    return new Session(exe);
  }

  /** Compile `graph` on `backend` (at `opts.precision`, see compileOn) and upload the resident inputs (see defaultResident). */
  static async open(backend: Backend, graph: Graph, initial: ReadonlyMap<string, HostTensor>, opts: CompileOnOptions = {}): Promise<Session> {
    const exe = await compileOn(backend, graph, opts);
    for (const [k, v] of defaultResident(graph, initial)) await exe.write(k, v);
    return new Session(exe);
  }

  get graph(): Graph {
    return this.exe.graph;
  }

  run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    return this.exe.run(feeds, fetch);
  }

  /** Read resident inputs of the given kinds back to the host. */
  async read(kinds: readonly InputKind[] = ['param', 'frozen', 'state']): Promise<Map<string, HostTensor>> {
    const m = new Map<string, HostTensor>();
    for (const i of this.graph.inputs) if (kinds.includes(i.kind) && i.kind !== 'data') m.set(i.name, await this.exe.read(i.name));
    return m;
  }

  /** Overwrite resident inputs (e.g. from a checkpoint); unknown names are an error. */
  async load(values: ReadonlyMap<string, HostTensor>): Promise<void> {
    for (const [k, v] of values) await this.exe.write(k, v);
  }

  dispose(): void {
    this.exe.dispose();
  }
}
