/**
 * @file NVRTC in parallel: the distinct sources of a program (codegen.ts `units`) compiled to CUBIN
 * (for the GPU's own architecture, so loading a module needs no PTX JIT) by worker threads, each with
 * its own NVRTC loaded through koffi. Results are cached on disk by a hash of the source and the
 * options (`<cacheDir>/<sha256>.cubin`, written atomically: a temporary file renamed into place), so a
 * second run compiles nothing; an unreadable or empty cache entry is compiled again. Where workers
 * cannot start, the sources are compiled one after the other on the calling thread.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KilnError } from '../../ir/errors.ts';
import { nvrtcFailure } from './errors.ts';
import { DEFAULT_CUDA_LIB_DIR } from './options.ts';

export interface NvrtcSource {
  readonly name: string;
  readonly source: string;
}

export interface NvrtcOptions {
  /** e.g. 'sm_90': CUBIN for that GPU. */
  readonly arch: string;
  readonly libDir?: string;
  /** Cache folder (none: no disk cache). */
  readonly cacheDir?: string;
  /** Worker threads (default: the CPU count, at most 16 and at most one per source). */
  readonly threads?: number;
}

export interface NvrtcResult {
  /** The CUBIN of each source, in order. */
  readonly images: readonly Buffer[];
  /** How many were compiled (the rest came from the cache). */
  readonly compiled: number;
  readonly threads: number;
}

/** The NVRTC libraries to try, in order. */
export function nvrtcLibraries(libDir: string = DEFAULT_CUDA_LIB_DIR): string[] {
  return [join(libDir, 'libnvrtc.so'), join(libDir, 'libnvrtc.so.13'), join(libDir, 'libnvrtc.so.12'), 'libnvrtc.so', 'libnvrtc.so.13', 'libnvrtc.so.12'];
}

export function nvrtcFlags(arch: string): string[] {
  // sm_90 builds sm_90a: the Hopper-only instructions (wgmma: flashAttentionWgmma.ts) need it.
  return [`--gpu-architecture=${arch === 'sm_90' ? 'sm_90a' : arch}`, '--std=c++17', '-default-device'];
}

/** The cache key of a source compiled with `flags`. */
export function cubinKey(source: string, flags: readonly string[]): string {
  return createHash('sha256').update(source).update(flags.join(' ')).update('cubin').digest('hex');
}

/**
 * The NVRTC compiler, as JavaScript source run both in workers (eval'd, CommonJS) and on the main
 * thread (through `new Function`): `makeCompiler(koffiPath, libs)` returns `(name, source, flags) =>
 * { image } | { error }`.
 */
const COMPILER_JS = String.raw`
function makeCompiler(koffiPath, libs) {
  const koffi = require(koffiPath);
  let lib, last = '';
  for (const n of libs) { try { lib = koffi.load(n); break; } catch (e) { last = n + ': ' + e.message; } }
  if (!lib) throw new Error('cannot load NVRTC (tried ' + libs.join(', ') + '): ' + last);
  const create = lib.func('int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int numHeaders, void *headers, void *names)');
  const compile = lib.func('int nvrtcCompileProgram(void *prog, int numOptions, const char **options)');
  const logSize = lib.func('int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)');
  const getLog = lib.func('int nvrtcGetProgramLog(void *prog, _Out_ uint8_t *log)');
  const cubinSize = lib.func('int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)');
  const getCubin = lib.func('int nvrtcGetCUBIN(void *prog, _Out_ uint8_t *cubin)');
  const destroy = lib.func('int nvrtcDestroyProgram(_Inout_ void **prog)');
  const errorString = lib.func('const char *nvrtcGetErrorString(int result)');
  return (name, source, flags) => {
    const prog = [null];
    const rc = create(prog, source, name + '.cu', 0, null, null);
    if (rc !== 0) return { error: 'nvrtcCreateProgram failed: ' + errorString(rc) };
    try {
      const crc = compile(prog[0], flags.length, flags);
      if (crc !== 0) {
        const n = [0];
        logSize(prog[0], n);
        const log = Buffer.alloc(Number(n[0]));
        getLog(prog[0], log);
        return { error: 'NVRTC could not compile ' + name + ': ' + errorString(crc), log: log.toString('utf8').replace(/\0+$/, '') };
      }
      const n = [0];
      cubinSize(prog[0], n);
      const image = Buffer.alloc(Number(n[0]));
      getCubin(prog[0], image);
      return { image };
    } finally {
      destroy(prog);
    }
  };
}
`;

const WORKER_JS = `${COMPILER_JS}
const { parentPort, workerData } = require('node:worker_threads');
let run;
try { run = makeCompiler(workerData.koffi, workerData.libs); } catch (e) { parentPort.postMessage({ fatal: String(e && e.message || e) }); }
if (run) {
  parentPort.postMessage({ ready: true });
  parentPort.on('message', (m) => {
    const r = run(m.name, m.source, m.flags);
    parentPort.postMessage({ id: m.id, ...r });
  });
}
`;

type CompileOne = (name: string, source: string, flags: readonly string[]) => { image?: Uint8Array; error?: string; log?: string };

let mainCompiler: CompileOne | undefined;
function onMainThread(libs: readonly string[]): CompileOne {
  const make = new Function('require', `${COMPILER_JS}\nreturn makeCompiler;`)(createRequire(import.meta.url)) as (k: string, l: readonly string[]) => CompileOne;
  return (mainCompiler ??= make(koffiPath(), libs));
}

function koffiPath(): string {
  return createRequire(import.meta.url).resolve('koffi');
}

/** An NVRTC failure: the unit, its function and the generated source around the failing line (errors.ts nvrtcFailure). */
function nvrtcError(u: NvrtcSource, r: { error?: string; log?: string }): KilnError {
  return nvrtcFailure(`unit ${u.name}`, u.source, (r.error ?? 'NVRTC failed').replace(/^NVRTC could not compile \S+: /, ''), r.log ?? '');
}

/** A cached CUBIN, or undefined when missing or not a whole ELF image. */
export function readCubin(file: string): Buffer | undefined {
  try {
    const b = readFileSync(file);
    // A CUBIN is an ELF file: anything else (truncated, empty, garbage) is compiled again.
    return b.length > 16 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46 ? b : undefined;
  } catch {
    return undefined;
  }
}

function writeCached(file: string, image: Uint8Array): void {
  try {
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, image);
    renameSync(tmp, file);
  } catch {
    // the cache is best effort
  }
}

/** Compile `units` to CUBIN, in parallel, through the disk cache. */
export async function compileCubins(units: readonly NvrtcSource[], o: NvrtcOptions): Promise<NvrtcResult> {
  const flags = nvrtcFlags(o.arch);
  const libs = nvrtcLibraries(o.libDir);
  const images: Array<Buffer | undefined> = units.map(() => undefined);
  const files = units.map((u) => (o.cacheDir ? join(o.cacheDir, `${cubinKey(u.source, flags)}.cubin`) : undefined));
  if (o.cacheDir) mkdirSync(o.cacheDir, { recursive: true });
  const todo: number[] = [];
  units.forEach((_, i) => {
    const hit = files[i] && readCubin(files[i]!);
    if (hit) images[i] = hit;
    else todo.push(i);
  });
  const threads = Math.max(1, Math.min(o.threads ?? Math.min(16, availableParallelism()), todo.length));
  const done = (i: number, r: { image?: Uint8Array; error?: string; log?: string }) => {
    if (!r.image) throw nvrtcError(units[i]!, r);
    const b = Buffer.from(r.image.buffer, r.image.byteOffset, r.image.byteLength);
    images[i] = b;
    if (files[i]) writeCached(files[i]!, b);
  };
  if (todo.length > 0) {
    if (threads <= 1 || todo.length <= 1) {
      const run = onMainThread(libs);
      for (const i of todo) done(i, run(units[i]!.name, units[i]!.source, flags));
    } else await inWorkers(units, todo, flags, libs, threads, done);
  }
  return { images: images as Buffer[], compiled: todo.length, threads: todo.length ? threads : 0 };
}

type Reply = { ready?: boolean; fatal?: string; id?: number; image?: Uint8Array; error?: string; log?: string };

/** A worker with NVRTC loaded, kept for later compiles (unref'd: it never keeps the process alive). */
interface PoolWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  onReply?: (m: Reply) => void;
  onError?: (e: unknown) => void;
}

const pool: PoolWorker[] = [];
let poolLibs = '';

function poolOf(threads: number, libs: readonly string[]): PoolWorker[] {
  if (poolLibs !== libs.join('\0')) {
    for (const w of pool.splice(0)) void w.worker.terminate();
    poolLibs = libs.join('\0');
  }
  while (pool.length < threads) {
    const worker = new Worker(WORKER_JS, { eval: true, workerData: { koffi: koffiPath(), libs } });
    worker.unref();
    let pw: PoolWorker;
    const ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (m: Reply) => {
        if (m.ready) return resolve();
        if (m.fatal) return reject(new KilnError(m.fatal));
        pw.onReply?.(m);
      });
      worker.on('error', (e) => {
        reject(e);
        pw.onError?.(e);
      });
    });
    ready.catch(() => {});
    pw = { worker, ready };
    pool.push(pw);
  }
  return pool.slice(0, threads);
}

async function inWorkers(units: readonly NvrtcSource[], todo: readonly number[], flags: readonly string[], libs: readonly string[], threads: number,
  done: (i: number, r: Reply) => void): Promise<void> {
  // Largest sources first: the pool ends with the short ones.
  const queue = [...todo].sort((a, b) => units[b]!.source.length - units[a]!.source.length);
  const workers = poolOf(threads, libs);
  try {
    await Promise.all(workers.map((w) => w.ready));
    await new Promise<void>((resolve, reject) => {
      let running = workers.length, failed = false;
      const fail = (e: unknown) => {
        if (failed) return;
        failed = true;
        reject(e);
      };
      const next = (w: PoolWorker) => {
        const i = queue.shift();
        if (i === undefined) {
          if (--running === 0) resolve();
          return;
        }
        w.worker.ref(); // keep the process alive while a compile is in flight
        w.worker.postMessage({ id: i, name: units[i]!.name, source: units[i]!.source, flags });
      };
      for (const w of workers) {
        w.onError = fail;
        w.onReply = (m) => {
          w.worker.unref();
          if (failed) return;
          try {
            done(m.id!, m);
          } catch (e) {
            return fail(e);
          }
          next(w);
        };
        next(w);
      }
    });
  } catch (e) {
    // A failed pool is not reused (a worker may still be busy with a compile that is no longer wanted).
    for (const w of pool.splice(0)) void w.worker.terminate();
    throw e;
  } finally {
    for (const w of workers) {
      w.onReply = undefined;
      w.onError = undefined;
    }
  }
}
