/**
 * @file FD against training steps as a PNG (issue 13 item 3): reads the `curves.tsv` that
 * bench/fae_vs_pixels_gpu.sh writes (space, step, fd, floor) and draws one line per space, plus the
 * real-vs-real floor, with runtime/train/lossPlot.ts. Also prints the markdown table.
 *
 *   npx tsx bench/fdCurves.ts curves.tsv out.png [title]
 */
import { readFileSync } from 'node:fs';
import { type Series, writeLossPlot } from '../runtime/train/lossPlot.ts';

const [file, png, title] = process.argv.slice(2);
if (!file || !png) {
  console.error('usage: tsx bench/fdCurves.ts curves.tsv out.png [title]');
  process.exit(2);
}
const rows = readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'))
  .map(([space, step, fd, floor]) => ({ space: space!, step: Number(step), fd: Number(fd), floor: Number(floor) }))
  .filter((r) => Number.isFinite(r.fd));
const spaces = [...new Set(rows.map((r) => r.space))];
const series: Series[] = spaces.map((s) => ({ name: `LightningDiT on ${s === 'fae' ? 'FAE latents' : 'pixels'}`, points: rows.filter((r) => r.space === s).sort((a, b) => a.step - b.step).map((r) => [r.step, r.fd] as const) }));
const floors = rows.map((r) => r.floor).filter(Number.isFinite);
if (floors.length) {
  const floor = floors.reduce((a, b) => a + b, 0) / floors.length;
  const steps = rows.map((r) => r.step);
  series.push({ name: 'real-vs-real floor', points: [[Math.min(...steps), floor], [Math.max(...steps), floor]] });
}
await writeLossPlot(png, series, { title: title ?? 'FD in the SSL encoder space vs training steps' });
const stepsAll = [...new Set(rows.map((r) => r.step))].sort((a, b) => a - b);
console.log(`| step | ${spaces.map((s) => `FD ${s}`).join(' | ')} |\n| --- | ${spaces.map(() => '---').join(' | ')} |`);
for (const st of stepsAll) console.log(`| ${st} | ${spaces.map((s) => rows.find((r) => r.space === s && r.step === st)?.fd.toFixed(3) ?? 'n/a').join(' | ')} |`);
