/**
 * @file Classifier-free guidance schedules for the flow samplers: none, constant, by interval, and
 * piecewise (FAE's: a different scale on each time range, e.g. 0.9 near the noise end and 2.5 on the
 * rest). Times are Kiln's convention (t = 0 noise, t = 1 data). `scaleAt(t)` is the scale w at t, or
 * undefined where the step uses the conditional velocity alone (outside the interval / every segment).
 * The CLI spelling: `--cfg 1.5`, `--cfg 1.5 --cfg-interval 0.3,1`, `--cfg-piecewise 0:0.3=0.9,0.3:1=2.5`.
 */
import { KilnError } from '../../ir/errors.ts';

export interface GuidanceSegment {
  readonly lo: number;
  readonly hi: number;
  readonly scale: number;
}

export type GuidanceSchedule =
  | { readonly kind: 'none' }
  | { readonly kind: 'constant'; readonly scale: number }
  | { readonly kind: 'interval'; readonly scale: number; readonly lo: number; readonly hi: number }
  | { readonly kind: 'piecewise'; readonly segments: readonly GuidanceSegment[] };

/** The scale at t (t compared in f32, as the references compare tensors), undefined = conditional only. */
export function guidanceScaleAt(g: GuidanceSchedule, t: number): number | undefined {
  const tf = Math.fround(t);
  const inside = (lo: number, hi: number) => tf >= Math.fround(lo) && tf <= Math.fround(hi);
  switch (g.kind) {
    case 'none': return undefined;
    case 'constant': return g.scale;
    case 'interval': return inside(g.lo, g.hi) ? g.scale : undefined;
    case 'piecewise': return g.segments.find((s) => inside(s.lo, s.hi))?.scale;
  }
}

function range(text: string, what: string): [number, number] {
  const p = text.split(/[,:]/).map((s) => Number(s.trim()));
  if (p.length !== 2 || p.some((v) => !Number.isFinite(v)) || p[0]! > p[1]! || p[0]! < 0 || p[1]! > 1)
    throw new KilnError(`${what}: '${text}' is not a time range lo,hi with 0 <= lo <= hi <= 1`);
  return [p[0]!, p[1]!];
}

/** `lo:hi=scale,lo:hi=scale,...` → segments (checked: ranges in [0, 1], not overlapping). */
export function parsePiecewise(text: string): GuidanceSchedule {
  const segments = text.split(',').map((part) => {
    const m = /^\s*([^=]+)=\s*([^=]+)$/.exec(part);
    if (!m) throw new KilnError(`--cfg-piecewise: '${part}' is not lo:hi=scale (e.g. 0:0.3=0.9,0.3:1=2.5)`);
    const [lo, hi] = range(m[1]!, '--cfg-piecewise');
    const scale = Number(m[2]);
    if (!Number.isFinite(scale)) throw new KilnError(`--cfg-piecewise: scale '${m[2]}' is not a number`);
    return { lo, hi, scale };
  }).sort((a, b) => a.lo - b.lo);
  for (let i = 1; i < segments.length; i++)
    if (segments[i]!.lo < segments[i - 1]!.hi)
      throw new KilnError(`--cfg-piecewise: ranges ${segments[i - 1]!.lo}:${segments[i - 1]!.hi} and ${segments[i]!.lo}:${segments[i]!.hi} overlap`);
  return { kind: 'piecewise', segments };
}

/** The schedule from the CLI's three options. */
export function guidanceFromOptions(o: { cfg?: number; cfgInterval?: string; cfgPiecewise?: string }): GuidanceSchedule {
  if (o.cfgPiecewise !== undefined) {
    if (o.cfg !== undefined || o.cfgInterval !== undefined) throw new KilnError('--cfg-piecewise cannot be combined with --cfg / --cfg-interval');
    return parsePiecewise(o.cfgPiecewise);
  }
  if (o.cfg === undefined) {
    if (o.cfgInterval !== undefined) throw new KilnError('--cfg-interval needs --cfg <scale>');
    return { kind: 'none' };
  }
  if (o.cfgInterval === undefined) return { kind: 'constant', scale: o.cfg };
  const [lo, hi] = range(o.cfgInterval, '--cfg-interval');
  return { kind: 'interval', scale: o.cfg, lo, hi };
}

export function describeGuidance(g: GuidanceSchedule): string {
  switch (g.kind) {
    case 'none': return 'no guidance';
    case 'constant': return `CFG ${g.scale}`;
    case 'interval': return `CFG ${g.scale} for t in [${g.lo}, ${g.hi}]`;
    case 'piecewise': return `CFG ${g.segments.map((s) => `${s.scale} on [${s.lo}, ${s.hi}]`).join(', ')}`;
  }
}
