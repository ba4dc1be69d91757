/**
 * @file KILN_DEBUG: comma-separated topics printed to stderr while compiling.
 *   ir      the Graph IR (with source locations) after tracing and after each transform
 *   passes  the Graph IR after each pass
 *   all     everything
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
