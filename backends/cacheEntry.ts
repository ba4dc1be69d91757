/**
 * @file Cache entries on disk, for the compiled-program caches (runtime/programCache.ts, the CUDA
 * build cache): a JSON file per key, written to a temporary file and renamed into place (atomic, so
 * concurrent runs see a whole entry or none), read back only when it is whole and of the right kind
 * (anything else is removed and answers "missing", so the caller compiles again). Values keep their
 * shared sub-objects shared (kernel-IR expressions are DAGs whose trees can be exponentially larger),
 * and Maps, typed arrays and non-finite numbers round-trip.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A JSON-able value cached under `key` in `dir`, or undefined (missing, unreadable, corrupt: then removed). */
export function readEntry<T>(dir: string, key: string, kind: string): T | undefined {
  const file = join(dir, `${key}.${kind}.json`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as { kind?: string; key?: string; value?: unknown };
    if (parsed.kind !== kind || parsed.key !== key || parsed.value === undefined) throw new Error('not an entry of this key');
    return decodeShared(parsed.value) as T;
  } catch {
    rmSync(file, { force: true });
    return undefined;
  }
}

/** Store `value` under `key` (atomically: a temporary file renamed into place; best effort). */
export function writeEntry(dir: string, key: string, kind: string, value: unknown): void {
  try {
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${key}.${kind}.json`);
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, JSON.stringify({ kind, key, value: encodeShared(value) }));
    renameSync(tmp, file);
  } catch {
    // the cache is best effort: a read-only or full disk only costs the compile
  }
}

/** JSON with sorted object keys (for hashing option objects). */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/**
 * A JSON-able form of `v` that keeps objects reachable twice shared: the first occurrence of such an
 * object is `{"$id": n, "$v": <object>}`, later ones `{"$ref": n}`. Maps become `{"$map": [[k, v]...]}`,
 * typed arrays `{"$ta": type, "$v": [...]}`; non-finite numbers `{"$num": "NaN" | "Infinity" | "-Infinity"}`.
 */
export function encodeShared(v: unknown): unknown {
  const seen = new Map<object, number>();
  const count = (x: unknown) => {
    if (!x || typeof x !== 'object') return;
    const n = seen.get(x) ?? 0;
    seen.set(x, n + 1);
    if (n > 0) return;
    if (x instanceof Map) for (const [k, y] of x) (count(k), count(y));
    else if (ArrayBuffer.isView(x)) return;
    else for (const y of Array.isArray(x) ? x : Object.values(x)) count(y);
  };
  count(v);
  const ids = new Map<object, number>();
  const enc = (x: unknown): unknown => {
    if (typeof x === 'number') return Number.isFinite(x) ? (Object.is(x, -0) ? { $num: '-0' } : x) : { $num: String(x) };
    if (!x || typeof x !== 'object') return x;
    const id = ids.get(x);
    if (id !== undefined) return { $ref: id };
    const shared = (seen.get(x) ?? 0) > 1;
    const me = shared ? ids.size : -1;
    if (shared) ids.set(x, me);
    let body: unknown;
    if (x instanceof Map) body = { $map: [...x].map(([k, y]) => [enc(k), enc(y)]) };
    else if (ArrayBuffer.isView(x)) body = { $ta: x.constructor.name, $v: Array.from(x as unknown as ArrayLike<number>, (n) => enc(n)) };
    else if (Array.isArray(x)) body = x.map(enc);
    else {
      const o: Record<string, unknown> = {};
      for (const [k, y] of Object.entries(x)) if (y !== undefined) o[k] = enc(y);
      body = Object.keys(o).some((k) => k.startsWith('$')) ? { $obj: o } : o;
    }
    return shared ? { $id: me, $v: body } : body;
  };
  return enc(v);
}

const TYPED: Record<string, new (xs: number[]) => unknown> = { Float32Array, Float64Array, Int32Array, Uint32Array, Uint16Array, Uint8Array, Int16Array, Int8Array };

/** The inverse of encodeShared. */
export function decodeShared(v: unknown): unknown {
  const byId = new Map<number, unknown>();
  const dec = (x: unknown): unknown => {
    if (!x || typeof x !== 'object') return x;
    if (Array.isArray(x)) return x.map(dec);
    const o = x as Record<string, unknown>;
    if ('$num' in o) return Number(o.$num);
    if ('$ref' in o) {
      if (!byId.has(o.$ref as number)) throw new Error(`dangling $ref ${String(o.$ref)}`);
      return byId.get(o.$ref as number);
    }
    if ('$id' in o) {
      const r = dec(o.$v);
      byId.set(o.$id as number, r);
      return r;
    }
    if ('$map' in o) return new Map((o.$map as Array<[unknown, unknown]>).map(([k, y]) => [dec(k), dec(y)]));
    if ('$ta' in o) {
      const T = TYPED[o.$ta as string];
      if (!T) throw new Error(`unknown typed array ${String(o.$ta)}`);
      return new T((o.$v as unknown[]).map((n) => dec(n) as number));
    }
    if ('$obj' in o) return Object.fromEntries(Object.entries(o.$obj as Record<string, unknown>).map(([k, y]) => [k, dec(y)]));
    return Object.fromEntries(Object.entries(o).map(([k, y]) => [k, dec(y)]));
  };
  return dec(v);
}
