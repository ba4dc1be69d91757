/**
 * @file The real-model golden cases, now in golden/modelCases.ts (shared with `kiln golden check`);
 * re-exported here for the tests that import them from test/support, plus the comparison every
 * backend's model test applies.
 */
import type { HostTensor } from '../../ir/tensor.ts';
import type { ModelCase } from '../../golden/modelCases.ts';
import { maxAbs, relErr } from './compare.ts';

export * from '../../golden/modelCases.ts';

/**
 * The checks of `c` that a backend's outputs `got` fail: each output within `tol` normwise of its
 * PyTorch golden (floored as the check says) and of the CPU interpreter's `cpu` (floored by the
 * golden's size), as lines of text.
 */
export function modelCaseMismatches(
  c: ModelCase, got: Readonly<Record<string, HostTensor>>, cpu: Readonly<Record<string, HostTensor>>, tol: number,
): string[] {
  const bad: string[] = [];
  for (const ch of c.checks) {
    const g = got[ch.output];
    if (!g) {
      bad.push(`${ch.output}: missing`);
      continue;
    }
    const eg = relErr(g.data, ch.want.data, ch.floor);
    const ec = relErr(g.data, cpu[ch.output]!.data, Math.max(maxAbs(ch.want.data), ch.floor));
    if (!(eg <= tol)) bad.push(`${ch.output}: vs golden ${eg.toExponential(2)}`);
    if (!(ec <= tol)) bad.push(`${ch.output}: vs cpu ${ec.toExponential(2)}`);
  }
  return bad;
}
