/**
 * @file The seeded host-side PRNG (mulberry32) shared by the runtime (data shuffling) and the tests
 * (random graphs, test data, gradient checks). Graph-level randomness is Philox (ir/philox.ts); this
 * one only draws host values, and its sequence is pinned by test/runtime/prng.test.ts because seeded
 * test data everywhere depends on it.
 */

/** mulberry32: a small, fast, deterministic 32-bit PRNG. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
