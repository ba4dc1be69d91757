/**
 * @file The real-model golden cases, now in golden/modelCases.ts (shared with `kiln golden check`);
 * re-exported here for the tests that import them from test/support, with the list every backend's
 * model tests run and the comparisons they apply (f32 against golden and oracle; low precision in units of u).
 */
import type { HostTensor } from '../../ir/tensor.ts';
import {
  type ModelCase, dinov2Case, ditCase, faeDiscriminatorCase, faeStageIaCase, faeStageIbCase, flowMatchingCase, tarflowCase,
} from '../../golden/modelCases.ts';
import { maxAbs, relErr } from './compare.ts';

export * from '../../golden/modelCases.ts';

/** One check's normwise errors: against its PyTorch golden and against the CPU interpreter (NaN: output missing). */
export interface CheckError {
  output: string;
  kind: 'forward' | 'grad';
  golden: number;
  cpu: number;
}

/**
 * The errors of a backend's outputs `got` on every check of `c`: normwise against the check's PyTorch golden
 * (floored as the check says) and against the CPU interpreter's `cpu` (floored by the golden's size).
 */
export function modelCaseErrors(c: ModelCase, got: Readonly<Record<string, HostTensor>>, cpu: Readonly<Record<string, HostTensor>>): CheckError[] {
  return c.checks.map((ch) => {
    const g = got[ch.output];
    if (!g) return { output: ch.output, kind: ch.kind, golden: NaN, cpu: NaN };
    return {
      output: ch.output, kind: ch.kind,
      golden: relErr(g.data, ch.want.data, ch.floor),
      cpu: relErr(g.data, cpu[ch.output]!.data, Math.max(maxAbs(ch.want.data), ch.floor)),
    };
  });
}

/** The errors above `tol` (either way), as lines of text. */
export function mismatchLines(errors: readonly CheckError[], tol: number): string[] {
  const bad: string[] = [];
  for (const e of errors) {
    if (Number.isNaN(e.golden)) bad.push(`${e.output}: missing`);
    else {
      if (!(e.golden <= tol)) bad.push(`${e.output}: vs golden ${e.golden.toExponential(2)}`);
      if (!(e.cpu <= tol)) bad.push(`${e.output}: vs cpu ${e.cpu.toExponential(2)}`);
    }
  }
  return bad;
}

/** The checks of `c` that `got` fails at `tol` ({@link modelCaseErrors}, {@link mismatchLines}). */
export function modelCaseMismatches(
  c: ModelCase, got: Readonly<Record<string, HostTensor>>, cpu: Readonly<Record<string, HostTensor>>, tol: number,
): string[] {
  return mismatchLines(modelCaseErrors(c, got, cpu), tol);
}

/** The real-model cases every backend's model tests run, by label. */
export const MODEL_CASES: ReadonlyArray<readonly [string, () => ModelCase]> = [
  ['dinov2 tiny', () => dinov2Case('tiny', 'run0')],
  ['dinov2 tiny_reg', () => dinov2Case('tiny_reg', 'run1')],
  ['dinov2 tiny_swiglu', () => dinov2Case('tiny_swiglu', 'run0')],
  ['lightningdit_p1', () => ditCase('lightningdit_p1')],
  ['lightningdit_p2_mixed', () => ditCase('lightningdit_p2_mixed')],
  ['dit_p2', () => ditCase('dit_p2')],
  ['flow matching', () => flowMatchingCase()],
  ['tarflow tiny_uncond', () => tarflowCase('tiny_uncond')],
  ['tarflow tiny_cond_p2', () => tarflowCase('tiny_cond_p2')],
  ['starflow tiny_starflow', () => tarflowCase('tiny_starflow')],
  ['fae stage Ia', () => faeStageIaCase()],
  ['fae stage Ib', () => faeStageIbCase()],
  ['fae discriminator', () => faeDiscriminatorCase()],
];

/** What {@link roundoffMismatches} found: failing checks, the largest forward error, the check nearest its bound. */
export interface RoundoffReport {
  bad: string[];
  forward: number;
  worst: { ratio: number; line: string };
}

/**
 * The checks of `c` that a low-precision run's outputs `got` fail, in units of the format's unit roundoff
 * `u`: forward outputs within 16u, gradients within 64u (normwise, floored by each check's floor; the
 * bounds are derived in test/models/autocast.test.ts), against the f32 golden and, when given, against
 * `ref` (the CPU oracle on the same autocast graph).
 */
export function roundoffMismatches(
  c: ModelCase, got: Readonly<Record<string, HostTensor>>, u: number, ref?: Readonly<Record<string, HostTensor>>,
): RoundoffReport {
  const r: RoundoffReport = { bad: [], forward: 0, worst: { ratio: 0, line: '' } };
  const units = (e: number) => `${(e / u).toFixed(1)}u`;
  for (const ch of c.checks) {
    const g = got[ch.output];
    if (!g) {
      r.bad.push(`${ch.output}: missing`);
      continue;
    }
    const tol = (ch.kind === 'forward' ? 16 : 64) * u;
    const eg = relErr(g.data, ch.want.data, ch.floor);
    const ec = ref ? relErr(g.data, ref[ch.output]!.data, ch.floor) : 0;
    if (ch.kind === 'forward') r.forward = Math.max(r.forward, eg);
    if (Math.max(eg, ec) / tol > r.worst.ratio)
      r.worst = { ratio: Math.max(eg, ec) / tol, line: `${ch.output} (${ch.kind}): vs golden ${units(eg)}${ref ? `, vs cpu autocast ${units(ec)}` : ''}` };
    if (!(eg <= tol)) r.bad.push(`${ch.output}: vs golden ${eg.toExponential(2)} = ${units(eg)} > ${units(tol)}`);
    if (ref && !(ec <= tol)) r.bad.push(`${ch.output}: vs cpu autocast ${ec.toExponential(2)} = ${units(ec)} > ${units(tol)}`);
  }
  return r;
}
