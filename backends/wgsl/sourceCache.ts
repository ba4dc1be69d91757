/**
 * @file The WGSL backend's disk cache of generated shaders (Node only: the runtime passes it to the
 * backend, see runtime/backends.ts; nothing below device creation imports it). An entry is the whole
 * dispatch list of one kernel program (every WGSL source, workgroup count, binding window and offsets
 * table), stored as `<dir>/<key>.json`, where the key is the SHA-256 of
 *  - the code generator's version: a hash of codegen.ts and prelude.ts as installed (any edit of the
 *    generator invalidates every entry; if they cannot be read, the cache is off),
 *  - the request's key material from the executable: the kernel program's kernels and buffer
 *    declarations (constants' values excluded: they are uploaded, not compiled in), where every buffer
 *    lives, the device limits and the kernel options (with the GEMM tile resolved per matmul).
 * Writes go to a temporary file renamed into place (atomic: concurrent runs never see half an entry).
 * A corrupt entry (unreadable JSON, another key, a malformed dispatch) is ignored, regenerated and
 * rewritten. Hits skip code generation, which takes 0.1–0.4 s per model on this machine (the Kiln
 * compile itself is not cached here). Pipelines are cached per device in memory (executable.ts);
 * Dawn in Node has no persistent pipeline cache to fill.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WgslDispatch } from './codegen.ts';

/** What the executable asks of a shader cache (any store; this module's is the disk one). */
export interface WgslSourceCache {
  /** The dispatches stored for `material`, or undefined (absent or corrupt). */
  get(material: string): WgslDispatch[][] | undefined;
  put(material: string, dispatches: readonly (readonly WgslDispatch[])[]): void;
}

/** Counters, for tests and reports. */
export interface DiskSourceCacheStats {
  hits: number;
  misses: number;
  corrupt: number;
}

export function defaultWgslCacheDir(): string {
  return join(homedir(), '.cache', 'kiln', 'wgsl');
}

let installedVersion: string | undefined | null;

/** A hash of the generator's own source files, or undefined where they are not on disk (a bundle). */
export function codegenVersion(): string | undefined {
  if (installedVersion === undefined) {
    try {
      const h = createHash('sha256');
      for (const f of ['codegen.ts', 'prelude.ts']) h.update(readFileSync(fileURLToPath(new URL(`./${f}`, import.meta.url))));
      installedVersion = h.digest('hex').slice(0, 16);
    } catch {
      installedVersion = null;
    }
  }
  return installedVersion ?? undefined;
}

const isDispatch = (d: unknown): d is WgslDispatch => {
  const x = d as WgslDispatch;
  return typeof x === 'object' && x !== null && typeof x.name === 'string' && typeof x.source === 'string' &&
    Array.isArray(x.workgroups) && x.workgroups.length === 3 && x.workgroups.every(Number.isInteger) &&
    Array.isArray(x.bindings) && x.bindings.every((b) => Number.isInteger(b.gpu) && Number.isInteger(b.offset) && Number.isInteger(b.size)) &&
    Array.isArray(x.offsets) && x.offsets.every(Number.isInteger);
};

export class DiskSourceCache implements WgslSourceCache {
  readonly stats: DiskSourceCacheStats = { hits: 0, misses: 0, corrupt: 0 };

  /** `version` defaults to codegenVersion(); without one the cache stores and finds nothing. */
  constructor(readonly dir: string = defaultWgslCacheDir(), readonly version: string | undefined = codegenVersion()) {}

  key(material: string): string {
    return createHash('sha256').update(`kiln-wgsl ${this.version}\n`).update(material).digest('hex');
  }

  file(material: string): string {
    return join(this.dir, `${this.key(material)}.json`);
  }

  get(material: string): WgslDispatch[][] | undefined {
    if (!this.version) return undefined;
    const key = this.key(material);
    let text: string;
    try {
      text = readFileSync(join(this.dir, `${key}.json`), 'utf8');
    } catch {
      this.stats.misses++;
      return undefined;
    }
    try {
      const e = JSON.parse(text) as { key?: unknown; dispatches?: unknown };
      if (e.key !== key || !Array.isArray(e.dispatches) || !e.dispatches.every((ds) => Array.isArray(ds) && ds.every(isDispatch))) throw new Error('malformed');
      this.stats.hits++;
      return e.dispatches as WgslDispatch[][];
    } catch {
      this.stats.corrupt++;
      this.stats.misses++;
      return undefined;
    }
  }

  put(material: string, dispatches: readonly (readonly WgslDispatch[])[]): void {
    if (!this.version) return;
    const key = this.key(material);
    try {
      mkdirSync(this.dir, { recursive: true });
      const tmp = join(this.dir, `${key}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
      writeFileSync(tmp, JSON.stringify({ key, dispatches }));
      renameSync(tmp, join(this.dir, `${key}.json`));
    } catch {
      // A read-only or full disk only costs the next run its code generation.
    }
  }
}
