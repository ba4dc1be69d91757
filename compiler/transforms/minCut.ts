/**
 * @file Minimum s–t cut of a directed graph with real capacities (Dinic's max-flow: BFS levels,
 * then blocking flows by DFS with per-vertex edge pointers). Used by rematerialization
 * (remat.ts) to choose which forward values a training step keeps for its backward.
 * Capacities may be Infinity (an edge that can never be cut); a finite cut must exist.
 */

export class FlowNetwork {
  private readonly head: number[] = [];
  private readonly to: number[] = [];
  private readonly next: number[] = [];
  private readonly cap: number[] = [];

  constructor(readonly size: number) {
    this.head = new Array<number>(size).fill(-1);
  }

  /** A directed edge u → v of capacity c (and its residual twin v → u of capacity 0). */
  addEdge(u: number, v: number, c: number): void {
    for (const [a, b, w] of [[u, v, c], [v, u, 0]] as const) {
      this.to.push(b);
      this.cap.push(w);
      this.next.push(this.head[a]!);
      this.head[a] = this.to.length - 1;
    }
  }

  /**
   * Max flow from s to t; returns its value and the source side of a minimum cut (the vertices
   * reachable from s in the residual graph).
   */
  minCut(s: number, t: number): { value: number; sourceSide: Uint8Array } {
    const n = this.size;
    const level = new Int32Array(n);
    const iter = new Int32Array(n);
    const queue = new Int32Array(n);
    let flow = 0;
    const bfs = (): boolean => {
      level.fill(-1);
      let qh = 0, qt = 0;
      queue[qt++] = s;
      level[s] = 0;
      while (qh < qt) {
        const u = queue[qh++]!;
        for (let e = this.head[u]!; e !== -1; e = this.next[e]!) {
          const v = this.to[e]!;
          if (this.cap[e]! > 0 && level[v] < 0) {
            level[v] = level[u]! + 1;
            queue[qt++] = v;
          }
        }
      }
      return level[t]! >= 0;
    };
    // Iterative DFS (graphs of tens of thousands of vertices would overflow a recursive one).
    const stack = new Int32Array(n);
    const via = new Int32Array(n);
    const augment = (): number => {
      let depth = 0;
      stack[0] = s;
      for (;;) {
        const u = stack[depth]!;
        if (u === t) {
          let push = Infinity;
          for (let d = 0; d < depth; d++) push = Math.min(push, this.cap[via[d]!]!);
          if (!Number.isFinite(push)) throw new Error('minCut: a path of infinite capacity joins source and sink (no finite cut)');
          for (let d = 0; d < depth; d++) {
            this.cap[via[d]!]! -= push;
            this.cap[via[d]! ^ 1]! += push;
          }
          return push;
        }
        let advanced = false;
        for (; iter[u]! !== -1; iter[u] = this.next[iter[u]!]!) {
          const e = iter[u]!;
          const v = this.to[e]!;
          if (this.cap[e]! > 0 && level[v] === level[u]! + 1) {
            via[depth] = e;
            stack[++depth] = v;
            advanced = true;
            break;
          }
        }
        if (advanced) continue;
        if (depth === 0) return 0;
        level[u] = -1; // dead end: never visit again in this phase
        depth--;
        const p = stack[depth]!;
        iter[p] = this.next[iter[p]!]!;
      }
    };
    while (bfs()) {
      for (let u = 0; u < n; u++) iter[u] = this.head[u]!;
      for (let f = augment(); f > 0; f = augment()) flow += f;
    }
    const sourceSide = new Uint8Array(n);
    const q: number[] = [s];
    sourceSide[s] = 1;
    while (q.length) {
      const u = q.pop()!;
      for (let e = this.head[u]!; e !== -1; e = this.next[e]!) {
        const v = this.to[e]!;
        if (this.cap[e]! > 0 && !sourceSide[v]) {
          sourceSide[v] = 1;
          q.push(v);
        }
      }
    }
    return { value: flow, sourceSide };
  }
}
