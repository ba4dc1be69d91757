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
 */
import { type CompileOptions, type Compiled, compile } from '../../compiler/compile.ts';
import type { Graph } from '../../ir/graph.ts';

export const COMPILE_BUDGET_MS = 1000;

/** CPU milliseconds `f` takes in this process. */
export function cpuMs(f: () => void): number {
  const t0 = process.cpuUsage();
  f();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000;
}

/** compile(g), with the CPU time it took and a message when that exceeds the budget. */
export function compileTimed(g: Graph, opts: CompileOptions = {}): { compiled: Compiled; ms: number; overBudget?: string } {
  let compiled: Compiled | undefined;
  const ms = cpuMs(() => (compiled = compile(g, opts)));
  const overBudget = ms > COMPILE_BUDGET_MS ? `compile took ${ms.toFixed(0)} ms of CPU time (budget ${COMPILE_BUDGET_MS} ms)` : undefined;
  return { compiled: compiled!, ms, overBudget };
}
