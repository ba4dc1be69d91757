/**
 * @file Fusion's kernel inspections, memoized by structure. What inspectKernel answers for a kernel
 * root depends only on the part of the graph the kernel may inline: the root and, through values not
 * in memory, everything it reads, down to the values in memory (which are loads, whatever buffer they
 * live in). The twelve (or twenty-eight) layers of a transformer ask the same question about
 * isomorphic parts, so the answer is computed once and translated: the part is written out in a
 * canonical order (depth first through inputs, each value numbered at its first visit) with each
 * node's op, attributes and type, values in memory by their type only; equal texts are isomorphic
 * parts, and the answer's node ids map through the visit order. A part larger than MAX_PART nodes is
 * inspected directly (such parts are rare and usually blocked early).
 */
import type { Graph, Node } from '../../ir/graph.ts';
import { formatType } from '../../ir/printer.ts';
import { type KernelInlining, inspectKernel } from '../lower/lowerNode.ts';

/** Larger parts are inspected without the memo (writing them out could cost more than inspecting). */
const MAX_PART = 400;

interface Answer {
  /** Visit positions of the inlined values. */
  readonly visited: readonly number[];
  readonly evaluations: ReadonlyArray<readonly [number, number]>;
  readonly needs: { readonly at: number; readonly why: string } | undefined;
}

export class InspectionMemo {
  private readonly answers = new Map<string, Answer>();
  private readonly nodeText = new Map<number, string>();
  hits = 0;
  misses = 0;

  constructor(private readonly g: Graph) {}

  /** inspectKernel(g, root, buffers), from the memo when an isomorphic part was inspected before. */
  inspect(root: Node, buffers: ReadonlyMap<number, number>): KernelInlining {
    const part = this.part(root, buffers);
    if (!part) return inspectKernel(this.g, root, buffers);
    const { text, order } = part;
    const known = this.answers.get(text);
    if (known) {
      this.hits++;
      return {
        visited: new Set(known.visited.map((p) => order[p]!)),
        evaluations: new Map(known.evaluations.map(([p, n]) => [order[p]!, n])),
        needs: known.needs && { node: order[known.needs.at]!, why: known.needs.why },
      };
    }
    this.misses++;
    const r = inspectKernel(this.g, root, buffers);
    const pos = new Map(order.map((id, i) => [id, i]));
    const at = (id: number) => {
      const p = pos.get(id);
      if (p === undefined) throw new Error(`fusion memo: %${id} lies outside the part of %${root.id}`);
      return p;
    };
    try {
      this.answers.set(text, {
        visited: [...r.visited].map(at),
        evaluations: [...r.evaluations].map(([id, n]) => [at(id), n] as const),
        needs: r.needs && { at: at(r.needs.node), why: r.needs.why },
      });
    } catch {
      // an answer naming a value outside the part: not memoized (never seen; inspection decides)
    }
    return r;
  }

  /** The canonical text of root's part and its values in visit order; undefined when over MAX_PART. */
  private part(root: Node, buffers: ReadonlyMap<number, number>): { text: string; order: number[] } | undefined {
    const g = this.g;
    const order: number[] = [];
    const pos = new Map<number, number>();
    const lines: string[] = [];
    const visit = (id: number, isRoot: boolean): number | undefined => {
      const had = pos.get(id);
      if (had !== undefined) return had;
      if (order.length >= MAX_PART) return undefined;
      const p = order.length;
      pos.set(id, p);
      order.push(id);
      const n = isRoot ? root : buffers.has(id) ? undefined : g.node(id);
      if (!n) {
        lines.push(`m ${formatType(g.typeOf(id))}`);
        return p;
      }
      const slot = lines.length;
      lines.push('');
      const ins: number[] = [];
      for (const i of n.inputs) {
        const q = visit(i, false);
        if (q === undefined) return undefined;
        ins.push(q);
      }
      lines[slot] = `${this.textOf(n)} ${ins.join(',')}`;
      return p;
    };
    if (visit(root.id, true) === undefined) return undefined;
    return { text: lines.join('\n'), order };
  }

  private textOf(n: Node): string {
    let t = this.nodeText.get(n.id);
    if (t === undefined) this.nodeText.set(n.id, (t = `${n.op} ${formatType(n.type)} ${JSON.stringify(n.attrs)}`));
    return t;
  }
}
