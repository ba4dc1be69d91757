/**
 * @file Finding and resolving a job: `kiln train` takes a job file (`jobs/fae-stage-ia.json`), a
 * shipped job's name (`fae-stage-ia` → jobs/fae-stage-ia.json), or a user's model file (`./my.ts`,
 * trained with its `job` export under `--job FILE`). Command-line overrides are applied to the raw
 * JSON before validation, so they are checked like the file.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../../ir/errors.ts';
import { loadFashionMnist } from '../../runtime/data/fashionMnist.ts';
import { FashionSource } from '../../runtime/data/fashionSource.ts';
import { ImageFolderSource } from '../../runtime/data/imageFolder.ts';
import type { BatchSource } from '../../runtime/data/source.ts';
import { type UserModel, isModelFile, loadUserModel } from '../userModel.ts';
import { type Job, JobConfigError, parseJob } from './schema.ts';

export const JOBS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'jobs');

export function shippedJobs(): string[] {
  return existsSync(JOBS_DIR) ? readdirSync(JOBS_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort() : [];
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new JobConfigError(`${file}: cannot read the job file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('the top level must be an object');
    return v;
  } catch (e) {
    throw new JobConfigError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
}

/** Set `path` (dot-separated) in a raw JSON object. */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  o[keys.at(-1)!] = value;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export interface ResolvedJob {
  job: Job;
  file: string;
  userModel?: UserModel;
}

/** A model file's default job: Fashion-MNIST at 28 px, AdamW, 200 steps. */
function defaultUserJob(file: string): Record<string, unknown> {
  return {
    name: file.replace(/^.*\//, '').replace(/\.[mc]?[tj]s$/, '').replace(/[^\w.-]/g, '_'),
    model: { kind: 'user', file },
    data: { kind: 'fashion_mnist' },
    schedule: { kind: 'warmup_cosine', lr: 1e-3, warmup: 20 },
    batchSize: 64,
    steps: 200,
  };
}

export async function resolveJob(arg: string, o: { jobFile?: string; overrides: Array<[string, unknown]> }): Promise<ResolvedJob> {
  let raw: Record<string, unknown>;
  let file: string;
  let userModel: UserModel | undefined;
  if (isModelFile(arg)) {
    userModel = await loadUserModel(arg);
    raw = deepMerge(defaultUserJob(arg), userModel.job ?? {});
    if (o.jobFile) raw = deepMerge(raw, readJson(o.jobFile));
    setPath(raw, 'model', { kind: 'user', file: arg });
    file = o.jobFile ?? arg;
  } else {
    file = existsSync(arg) || arg.endsWith('.json') ? arg : join(JOBS_DIR, `${arg}.json`);
    if (!existsSync(file)) {
      const names = shippedJobs();
      throw new JobConfigError(`no job '${arg}': not a file, and not a shipped job (${names.join(', ')})`);
    }
    raw = readJson(file);
  }
  for (const [path, v] of o.overrides) if (v !== undefined) setPath(raw, path, v);
  const job = parseJob(raw, file);
  return { job, file, userModel };
}

/** The job's data as a BatchSource (the MLP and user models with flat inputs reshape it themselves). */
export function makeSource(job: Job, warn: (s: string) => void): BatchSource {
  const d = job.data;
  if (d.kind === 'fashion_mnist') {
    return new FashionSource(loadFashionMnist('train', d.dir ?? undefined), {
      batchSize: job.batchSize, seed: job.seed, size: d.size, fit: d.fit ?? undefined, normalize: d.normalize, limit: d.limit ?? undefined,
    });
  }
  if (!existsSync(d.root)) throw new KilnError(`data.root: ${resolve(d.root)} does not exist`);
  return new ImageFolderSource({ root: d.root, batchSize: job.batchSize, seed: job.seed, size: d.size, channels: d.channels, flip: d.flip, normalize: d.normalize, onError: d.onError, warn, workers: d.workers, cacheFile: d.cacheFile });
}
