/**
 * Golden IR tests: for each program in golden/irCases.ts, the Graph IR text in
 * golden/ir/<name>.input.kiln is parsed and compiled, and the resulting kernel program (fused,
 * scheduled, memory planned) must equal golden/ir/<name>.expected.txt exactly. The input text must
 * also still be what the DSL traces. `npm run golden:ir` rewrites both files (review the diff).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IR_CASES } from '../../golden/irCases.ts';
import { compile } from '../../compiler/compile.ts';
import { printProgram } from '../../ir/kernel/print.ts';
import { parseGraph } from '../../ir/parser.ts';
import { printGraph } from '../../ir/printer.ts';

const DIR = new URL('../../golden/ir/', import.meta.url).pathname;
const UPDATE = process.env.KILN_UPDATE_GOLDENS === '1';

describe('golden IR: input graph → fused and scheduled kernel program', () => {
  for (const [name, make] of Object.entries(IR_CASES)) {
    it(name, () => {
      const inFile = join(DIR, `${name}.input.kiln`);
      const outFile = join(DIR, `${name}.expected.txt`);
      const traced = printGraph(make());
      if (UPDATE) {
        writeFileSync(inFile, traced);
        writeFileSync(outFile, printProgram(compile(parseGraph(traced)).program));
      }
      expect(existsSync(inFile), `${inFile} is missing: run npm run golden:ir`).toBe(true);
      const input = readFileSync(inFile, 'utf8');
      expect(input, 'the DSL no longer traces the stored input (npm run golden:ir to update)').toBe(traced);
      expect(printProgram(compile(parseGraph(input)).program)).toBe(readFileSync(outFile, 'utf8'));
    });
  }
});
