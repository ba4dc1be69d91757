/**
 * @file Compile-time optimizations change nothing: the compiled kernel program of several models (the
 * kernel IR of every kernel in launch order, the buffer table with each temporary's arena offset, the
 * arena size, inputs and outputs) hashes to the SHA-256 stored in golden/compiled-digests.json. The
 * digests were taken before the compiler was sped up (main 63fcc03, 2026-12-02) and every speed-up
 * since must leave them unchanged. The CUDA and WGSL sources are functions of this program alone, so
 * they are pinned with it. A change meant to change compiled programs regenerates the file with
 * KILN_UPDATE_GOLDENS=1 (say why in the commit); on a mismatch the program text is written to
 * out/compiled-pins/<name>.txt to diff against the same file from the previous commit.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import { printProgram } from '../../ir/kernel/print.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { atPrecision } from '../../runtime/compile.ts';

const FILE = new URL('../../golden/compiled-digests.json', import.meta.url).pathname;
const OUT = new URL('../../out/compiled-pins/', import.meta.url).pathname;
const UPDATE = process.env.KILN_UPDATE_GOLDENS === '1';

/** name → [program, batch, size, precision, forward only]: training steps unless marked forward. */
const CASES: Record<string, [string, number, string | undefined, 'bf16' | 'f32', boolean]> = {
  'mlp-train-b8': ['mlp', 8, undefined, 'bf16', false],
  'block-train-b2-64x4x16': ['block', 2, '64x4x16', 'bf16', false],
  'lightningdit-B1-train-b16': ['lightningdit', 16, 'B/1', 'bf16', false],
  'dinov2-s-forward-b1': ['dinov2', 1, 's', 'bf16', true],
  'tarflow-tiny-train-b2': ['tarflow', 2, 'tiny', 'bf16', false],
  'fae-tiny-train-b2': ['fae', 2, 'tiny', 'bf16', false],
};

/** Everything a backend builds from: the kernels as printed, and the buffer table with its offsets. */
function programText(p: KernelProgram): string {
  const buffers = p.buffers.map((b) => [b.kind, b.dtype, b.numel, b.offset ?? null, b.name ?? null]);
  return `${printProgram(p)}\n${JSON.stringify(buffers)}\narena ${p.arenaBytes}\n`;
}

const stored: Record<string, string> = UPDATE ? {} : JSON.parse(readFileSync(FILE, 'utf8'));

describe('compiled programs are byte-identical to the stored digests', () => {
  for (const [name, [program, batch, size, precision, forward]] of Object.entries(CASES)) {
    it(name, () => {
      const g = buildProgram(program, { train: !forward, batch, size });
      const text = programText(compile(precision === 'f32' ? g : atPrecision(g, precision)).program);
      const digest = createHash('sha256').update(text).digest('hex');
      if (UPDATE) {
        stored[name] = digest;
        writeFileSync(FILE, JSON.stringify(stored, null, 2) + '\n');
        return;
      }
      if (digest !== stored[name]) {
        mkdirSync(OUT, { recursive: true });
        writeFileSync(`${OUT}${name}.txt`, text);
      }
      expect(digest, `${name}: the compiled program changed (text in out/compiled-pins/${name}.txt)`).toBe(stored[name]);
    }, 120_000);
  }
});
