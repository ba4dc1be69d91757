/**
 * @file compile() under a time budget, for the differential tests: a graph whose compile takes longer
 * than COMPILE_BUDGET_MS of CPU time fails its test, so that compile-time blow-ups (exponential index
 * simplification on high-rank view chains, found by an external fuzzer) are found by `npm test`.
 *
 * The budget is CPU time of this process (process.cpuUsage: vitest runs test files in forked
 * processes), not wall time, so that other processes on a loaded 2-core CI machine do not count.
 * Random graphs compile in 1..150 ms (the worst of the view-chain graphs, first call in a process
 * included, measured on the 2-core development machine); the blow-ups this guards against took
 * 1.9 s and 9.4 s (fuzzRepros/compile-slow-*) and grow by an order of magnitude per chain level.
 * 1 s leaves about 7x headroom over the slowest legitimate compile for GC pauses and slower runners.
 *
 * Kernel size has a budget too (KERNEL_TEXT_BUDGET, printed kernel IR per kernel): index expressions
 * the simplifier cannot collapse used to be written out as exponentially large trees (1.47 MB for
 * one kernel of fuzzRepros/open-index-blowup, which still compiled in about 1.2 s); random graphs'
 * largest kernels print in about 2.6 kB (view chains) and 2 kB (default graphs).
 */
import { type CompileOptions, type Compiled, compile } from '../../compiler/compile.ts';
import type { Graph } from '../../ir/graph.ts';
import { printKernel } from '../../ir/kernel/print.ts';

export const COMPILE_BUDGET_MS = 1000;
/** Characters of printed kernel IR one kernel may have (about 20x the largest random-graph kernel). */
export const KERNEL_TEXT_BUDGET = 50_000;

/** CPU milliseconds `f` takes in this process. */
export function cpuMs(f: () => void): number {
  const t0 = process.cpuUsage();
  f();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000;
}

/** compile(g), with the CPU time it took and a message when that or a kernel's size exceeds its budget. */
export function compileTimed(g: Graph, opts: CompileOptions = {}): { compiled: Compiled; ms: number; overBudget?: string } {
  let compiled: Compiled | undefined;
  const ms = cpuMs(() => (compiled = compile(g, opts)));
  let overBudget = ms > COMPILE_BUDGET_MS ? `compile took ${ms.toFixed(0)} ms of CPU time (budget ${COMPILE_BUDGET_MS} ms)` : undefined;
  for (const k of compiled!.program.kernels) {
    const chars = printKernel(k).length;
    if (!overBudget && chars > KERNEL_TEXT_BUDGET) overBudget = `kernel ${k.name} prints in ${chars} characters (budget ${KERNEL_TEXT_BUDGET})`;
  }
  return { compiled: compiled!, ms, overBudget };
}
