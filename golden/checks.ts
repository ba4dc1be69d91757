/**
 * @file The golden-output checks behind `kiln golden check`: each stored golden (golden/data/...) run on
 * a chosen backend, with every output's max error against its tolerance. The same tolerances as the
 * test suite (test/nn/layers.test.ts): max |kiln − ref| ≤ TOL · (1 + max |ref|), TOL = 1e-5, except
 * `timestep_dit` (5e-5, see that test's comment), on every backend.
 *
 * Covered: the nn-layer goldens (golden/nn_layers.py → golden/data/nn/). Regenerating them is
 * GOLDEN_SCRIPTS (python3 golden/<script>.py, which needs torch; see README "Testing").
 */
import type { Backend } from '../backends/backend.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { compileOn } from '../runtime/compile.ts';
import { goldenFiles, loadGolden, traceGolden } from './nnCases.ts';

export const GOLDEN_SCRIPTS = ['nn_layers', 'optim_golden', 'losses_golden', 'safetensors_interop', 'dinov2_golden', 'lightningdit_golden', 'tarflow_golden', 'fae_golden'] as const;

export interface OutputCheck {
  output: string;
  maxErr: number;
  bound: number;
  ok: boolean;
}

export interface GoldenCheck {
  name: string;
  file: string;
  run(backend: Backend): Promise<OutputCheck[]>;
}

const TOL = 1e-5;
const TOL_OVERRIDE: Record<string, number> = { timestep_dit: 5e-5 };

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i])));
  return m;
}

export function compareOutput(name: string, got: HostTensor | undefined, ref: HostTensor, tol: number): OutputCheck {
  if (!got || got.shape.join(',') !== ref.shape.join(',')) return { output: name, maxErr: Infinity, bound: 0, ok: false };
  let err = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(Number(got.data[i]) - Number(ref.data[i]));
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  const bound = tol * (1 + maxAbs(ref.data));
  return { output: name, maxErr: err, bound, ok: err <= bound };
}

function nnCheck(file: string): GoldenCheck {
  const name = `nn/${file.replace(/\.safetensors$/, '')}`;
  return {
    name, file: `golden/data/nn/${file}`,
    async run(backend) {
      const g = loadGolden(file);
      const { graph } = traceGolden(g);
      const exe = await compileOn(backend, graph);
      try {
        const feeds: Record<string, HostTensor> = {};
        for (const i of graph.inputs) {
          const v = g.byPrefix('param.').get(i.name) ?? g.byPrefix('input.').get(i.name);
          if (!v) throw new Error(`${name}: the golden has no value for input '${i.name}'`);
          if (i.kind === 'data') feeds[i.name] = v;
          else await exe.write(i.name, v);
        }
        const got = await exe.run(feeds);
        const tol = TOL_OVERRIDE[g.name] ?? TOL;
        return [...g.byPrefix('output.')].map(([k, ref]) => compareOutput(k, got[k], ref, tol));
      } finally {
        exe.dispose();
      }
    },
  };
}

export function goldenChecks(): GoldenCheck[] {
  return goldenFiles.map(nnCheck);
}
