/**
 * @file Loss curves as PNG: the plot is drawn as an SVG document (axes, ticks, one polyline per series,
 * log-scaled y when the values span more than a decade) and rasterized by sharp.
 */
import sharp from 'sharp';

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function esc(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

/** The plot as an SVG string (exported for tests and for callers who want vector output). */
export function lossPlotSvg(series: readonly Series[], o: { title?: string; width?: number; height?: number } = {}): string {
  const W = o.width ?? 800, H = o.height ?? 480, L = 70, R = 20, T = 36, B = 50;
  const pts = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xs = pts.map(([x]) => x), ys = pts.map(([, y]) => y);
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  const [ymin, ymax] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  const log = ymin > 0 && ymax / ymin > 10;
  const f = (y: number) => (log ? Math.log10(y) : y);
  let [y0, y1] = [f(ymin), f(ymax)];
  if (y1 - y0 < 1e-12) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x: number) => L + ((x - x0) / Math.max(x1 - x0, 1e-12)) * (W - L - R);
  const py = (y: number) => T + (1 - (f(y) - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#444"/>`];
  for (let k = 0; k <= 4; k++) {
    const yv = y0 + ((y1 - y0) * k) / 4, yy = T + (1 - k / 4) * (H - T - B);
    const label = log ? (10 ** yv).toPrecision(3) : yv.toPrecision(3);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${yy + 4}" text-anchor="end">${label}</text>`);
    const xv = x0 + ((x1 - x0) * k) / 4, xx = px(xv);
    parts.push(`<text x="${xx}" y="${H - B + 18}" text-anchor="middle">${Math.round(xv)}</text>`);
  }
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">step</text>`);
  if (o.title) parts.push(`<text x="${L}" y="${T - 12}" font-size="14">${esc(o.title)}${log ? ' (log scale)' : ''}</text>`);
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length]!;
    const path = s.points.filter(([, y]) => Number.isFinite(y) && (!log || y > 0)).map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    if (path) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${path}"/>`);
    parts.push(`<text x="${W - R - 8}" y="${T + 16 + 16 * k}" text-anchor="end" fill="${color}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Render the loss plot to a PNG file. */
export async function writeLossPlot(path: string, series: readonly Series[], o: { title?: string } = {}): Promise<void> {
  await sharp(Buffer.from(lossPlotSvg(series, o))).png().toFile(path);
}
