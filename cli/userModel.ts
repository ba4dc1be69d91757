/**
 * @file Loading a user's TypeScript model file (`kiln compile ./my-model.ts`, `kiln train ./my-model.ts`).
 *
 * The convention (README "Your own model"): the file is an ES module that exports
 *   model    a Module (its parameters are named by property path, as PyTorch state_dict keys)
 *   program  (t: TraceContext, o: { batch: number }) => Record<string, Tensor>
 *            declaring its data inputs with t.input(...) and returning its outputs; for training it
 *            returns a scalar `loss` (other scalar outputs are logged as metrics). The trainer feeds
 *            input `x` with the image batch (reshaped to the declared shape: [B, C, H, W] or
 *            [B, C·H·W]) and `y` (i32 [B]) with the labels.
 *   job      (optional) a partial job config (data, schedule, steps, ...) used by `kiln train FILE`
 *            under whatever `--job FILE` and the flags give.
 * The file is imported through tsx (the `kiln` command registers it); it imports Kiln's modules by
 * relative path (e.g. `../compiler/dsl/index.ts`), so its Module is the same class as Kiln's.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Module, type Tensor, type TraceContext, trace } from '../compiler/dsl/index.ts';
import { KilnError } from '../ir/errors.ts';
import type { Graph } from '../ir/graph.ts';

export interface UserModel {
  file: string;
  model: Module;
  program: (t: TraceContext, o: { batch: number }) => Record<string, Tensor>;
  job?: Record<string, unknown>;
}

export function isModelFile(arg: string): boolean {
  return /\.(m?ts|m?js)$/.test(arg);
}

export async function loadUserModel(file: string): Promise<UserModel> {
  const path = resolve(file);
  if (!existsSync(path)) throw new KilnError(`${file}: no such model file`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError(`${file}: cannot load the model file: ${(e as Error).message.split('\n')[0]}`);
  }
  const model = mod.model;
  if (!(model instanceof Module)) throw new KilnError(`${file}: must export \`model\`, a Module (found ${model === undefined ? 'no such export' : typeof model})`);
  if (typeof mod.program !== 'function') throw new KilnError(`${file}: must export \`program(t, { batch })\` returning the outputs (found ${mod.program === undefined ? 'no such export' : typeof mod.program})`);
  const job = mod.job;
  if (job !== undefined && (typeof job !== 'object' || job === null)) throw new KilnError(`${file}: the \`job\` export must be an object (a partial job config)`);
  return { file, model, program: mod.program as UserModel['program'], job: job as Record<string, unknown> | undefined };
}

/** Trace the user's program at a batch size (name: the file's base name). */
export function traceUserModel(u: UserModel, batch: number): Graph {
  const name = u.file.replace(/^.*\//, '').replace(/\.[mc]?[tj]s$/, '').replace(/\W/g, '_');
  return trace(name, (t) => u.program(t, { batch }), { params: u.model });
}
