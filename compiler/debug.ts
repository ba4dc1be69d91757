/**
 * @file KILN_DEBUG: comma-separated topics printed to stderr while compiling.
 *   ir       the Graph IR (with source locations) after tracing and after each transform
 *   passes   the Graph IR after each pass
 *   kernels  the compiled kernel program
 *   source   every generated kernel's source (CUDA today), with its kernel name and graph nodes
 *   all      everything
 * This is the one environment variable read below cli/ and runtime/ (test/architecture.test.ts
 * checks it): a debug switch must reach every layer without being passed through each call. Backends
 * call debugSource where they generate modules (the one value import backends make of compiler/).
 */
import type { Graph } from '../ir/graph.ts';
import { printGraph } from '../ir/printer.ts';

const topics = new Set((process.env.KILN_DEBUG ?? '').split(',').map((s) => s.trim()).filter(Boolean));

export function debugOn(topic: string): boolean {
  return topics.has(topic) || topics.has('all') || topics.has('1');
}

/** Print `g` after `stage` when `topic` is enabled. */
export function dumpGraph(topic: 'ir' | 'passes', stage: string, g: Graph): void {
  if (debugOn(topic)) process.stderr.write(`// ---- KILN_DEBUG ${topic}: after ${stage} ----\n${printGraph(g, { locs: true })}`);
}

/** The KILN_DEBUG=source text of one generated kernel: a header naming it and its graph nodes, then its source. */
export function formatKernelSource(backend: string, kernelName: string, nodes: readonly number[], source: string): string {
  const from = nodes.length ? nodes.map((n) => `%${n}`).join(' ') : '(none)';
  return `// ---- KILN_DEBUG source: ${backend} kernel ${kernelName}, from graph nodes ${from} ----\n${source.endsWith('\n') ? source : `${source}\n`}`;
}

/** Print a generated kernel's source (for backend `backend`) when KILN_DEBUG includes `source`. */
export function debugSource(backend: string, kernelName: string, nodes: readonly number[], source: string): void {
  if (debugOn('source')) process.stderr.write(formatKernelSource(backend, kernelName, nodes, source));
}
