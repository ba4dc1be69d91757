/**
 * @file The compiled-program cache on disk: a KernelProgram stored under a hash of the graph (its text
 * form, which round-trips every op, attribute, constant and input), the compile options, the target
 * and Kiln's version (the package version plus a hash of the compiler's sources, so a changed compiler
 * never reads an old entry). A second compile of the same graph reads the program instead of running
 * the compiler. Entries (backends/cacheEntry.ts) are written atomically; an entry that cannot be read
 * or decoded is compiled again and replaced.
 *
 * Folder: `<KILN_CACHE_DIR or ~/.cache/kiln>/programs`; KILN_PROGRAM_CACHE=off turns it off.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readEntry, stableJson, writeEntry } from '../backends/cacheEntry.ts';
import type { Graph } from '../ir/graph.ts';
import type { KernelProgram } from '../ir/kernel/types.ts';
import { printGraph } from '../ir/printer.ts';

/** Kiln's root folder (this file is runtime/programCache.ts). */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

let version: string | undefined;
/**
 * Kiln's version for cache keys: package.json's version and a hash of the sources of everything that
 * decides what a program compiles to (ir, compiler, backends).
 */
export function kilnVersion(): string {
  if (version !== undefined) return version;
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version?: string };
  const h = createHash('sha256');
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.ts')) h.update(p.slice(ROOT.length)).update(readFileSync(p));
    }
  };
  for (const d of ['ir', 'compiler', 'backends']) walk(join(ROOT, d));
  return (version = `${pkg.version ?? '0'}+${h.digest('hex').slice(0, 16)}`);
}

/** The cache key of a graph compiled with `extra` (options, target) by Kiln `versionTag`. */
export function programKey(g: Graph, extra: unknown = {}, versionTag: string = kilnVersion()): string {
  return createHash('sha256').update(versionTag).update('\0').update(stableJson(extra)).update('\0').update(printGraph(g)).digest('hex');
}

/** The default cache folder: `$KILN_CACHE_DIR/programs`, else ~/.cache/kiln/programs; undefined when KILN_PROGRAM_CACHE=off. */
export function defaultProgramCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  if (env.KILN_PROGRAM_CACHE === 'off') return undefined;
  return join(env.KILN_CACHE_DIR ?? join(homedir(), '.cache', 'kiln'), 'programs');
}

export interface CachedCompile {
  readonly program: KernelProgram;
  /** The entry's key (backends key their own caches by it). */
  readonly key: string;
  /** true when the program came from the cache (the compiler did not run). */
  readonly hit: boolean;
}

/** The program of `g`: from the cache in `dir` when there, else `make()`'s, stored for next time. */
export function cachedProgram(g: Graph, make: () => KernelProgram, o: { dir?: string; extra?: unknown; version?: string } = {}): CachedCompile {
  const key = programKey(g, o.extra ?? {}, o.version ?? kilnVersion());
  if (o.dir) {
    const hit = readEntry<KernelProgram>(o.dir, key, 'program');
    if (hit && Array.isArray(hit.kernels) && Array.isArray(hit.buffers) && hit.inputs instanceof Map && hit.outputs instanceof Map) return { program: hit, key, hit: true };
  }
  const program = make();
  if (o.dir) writeEntry(o.dir, key, 'program', program);
  return { program, key, hit: false };
}

