/**
 * @file From a GPU window's FAE chain results (bench/fae_chain_gpu.sh's $OUT, unpacked) to docs/img and a markdown
 * section for docs/RESULTS.md: small sample grids (the first two rows of each sample grid: 2 samples of every class,
 * LightningDiT with and without CFG, TarFlow with and without guidance; the reconstruction grid as it is), the
 * FD-against-steps curve PNG (runtime/train/lossPlot.ts) with its table and the steps each space needs to reach a
 * given FD (issue 13 item 3) when curves.tsv (space, step, fd, floor) exists, and the Kiln vs PyTorch tables
 * (table.md, bench/fae_chain_table.py), under a heading with the card, date and commit.
 *
 *   npx tsx bench/faeChainDocs.ts RESULTS_DIR docs/img PREFIX [--commit HASH] [--title T] [--md FILE]
 *                                 [--samples 1000] [--columns 20] [--curve-samples 500]
 *
 * The card and date come from RESULTS_DIR/when.txt or its parent's (the queue script writes it: date, then
 * nvidia-smi's name, driver, memory); the markdown goes to --md FILE (else stdout).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { type Series, writeLossPlot } from '../runtime/train/lossPlot.ts';

const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    commit: { type: 'string', default: '(commit not given)' }, title: { type: 'string', default: 'the FAE chain' }, md: { type: 'string' },
    samples: { type: 'string', default: '1000' }, columns: { type: 'string', default: '20' }, 'curve-samples': { type: 'string', default: '500' },
  },
});
const [dir, img, prefix = 'fae-gpu'] = positionals;
if (!dir || !img) {
  console.error('usage: tsx bench/faeChainDocs.ts RESULTS_DIR docs/img [PREFIX] [--commit HASH --title T --md FILE --samples 1000 --columns 20 --curve-samples 500]');
  process.exit(2);
}
const columns = Number(o.columns);
const md: string[] = [];
const link = (file: string, alt: string) => md.push(`![${alt}](${relative(o.md ? dirname(o.md) : '.', file)})`, '');
mkdirSync(img, { recursive: true });

const whenFile = [join(dir, 'when.txt'), join(dir, '..', 'when.txt')].find(existsSync);
const [date = '(date unknown)', card = '(card unknown)'] = whenFile ? readFileSync(whenFile, 'utf8').trim().split('\n') : [];
md.push(`### ${o.title} (${date}, ${card.trim()}, commit ${o.commit})`, '');

/** The first two rows of a labelled sample grid (rows of equal height: tiles with their class labels below). */
async function topRows(src: string, dst: string, count: number): Promise<string> {
  const meta = await sharp(src).metadata();
  const rows = Math.min(meta.height!, Math.round((2 * meta.height!) / Math.ceil(count / columns)));
  await sharp(src).extract({ left: 0, top: 0, width: meta.width!, height: rows }).png({ compressionLevel: 9 }).toFile(dst);
  console.error(`${dst} (${meta.width}x${rows} of ${meta.width}x${meta.height})`);
  return dst;
}

const table = join(dir, 'table.md');
if (existsSync(table)) md.push(readFileSync(table, 'utf8').trim(), '');

const samples = join(dir, 'samples');
const grids: Array<[string, string]> = [['dit-cfg', 'LightningDiT, CFG 2.5 on t in [0.3, 1]'], ['dit', 'LightningDiT, no guidance'], ['tarflow-cfg', 'TarFlow, guidance 1'], ['tarflow', 'TarFlow, no guidance']];
for (const [name, alt] of grids) {
  const f = join(samples, `${name}.png`);
  if (!existsSync(f)) continue;
  link(await topRows(f, join(img, `${prefix}-${name}.png`), Number(o.samples)), `${alt} (Kiln; 2 samples of each class)`);
}
if (existsSync(join(samples, 'reconstructions.png'))) {
  const dst = join(img, `${prefix}-reconstructions.png`);
  await sharp(join(samples, 'reconstructions.png')).png({ compressionLevel: 9 }).toFile(dst);
  link(dst, 'FAE reconstructions (Kiln)');
}

const tsv = join(dir, 'curves.tsv');
const rows = existsSync(tsv)
  ? readFileSync(tsv, 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'))
    .map(([space, step, fd, floor]) => ({ space: space!, step: Number(step), fd: Number(fd), floor: Number(floor) })).filter((r) => Number.isFinite(r.fd))
  : [];
if (rows.length) {
  // torch-fae: the PyTorch side's LightningDiT on its own FAE latents (bench/fae_pipeline_torch.py --curve-every)
  const spaces = ([['fae', 'FAE latents'], ['pixels', 'pixels'], ['torch-fae', 'FAE latents, PyTorch']] as const).filter(([s]) => rows.some((r) => r.space === s));
  const series: Series[] = spaces.map(([s, label]) => ({ name: `LightningDiT on ${label}`, points: rows.filter((r) => r.space === s).sort((a, b) => a.step - b.step).map((r) => [r.step, r.fd] as const) }));
  const floors = rows.map((r) => r.floor).filter(Number.isFinite);
  const steps = rows.map((r) => r.step);
  if (floors.length) series.push({ name: 'real-vs-real floor', points: [[Math.min(...steps), floors[0]!], [Math.max(...steps), floors[0]!]] });
  const png = join(img, `${prefix}-fd-curves.png`);
  await writeLossPlot(png, series.filter((s) => s.points.length), { title: 'FD in the SSL encoder space vs LightningDiT training steps (same model and budget)' });
  md.push(`FD (N = ${o['curve-samples']}, mean-pooled SSL-encoder features, floor ${floors[0]?.toFixed(3) ?? 'n/a'}) of the same LightningDiT trained on FAE latents and on pixels, at every checkpoint:`, '');
  link(png, 'FD against training steps, FAE latents vs pixels');
  md.push(`| step | ${spaces.map(([, l]) => `FD, ${l}`).join(' | ')} |`, `| --- | ${spaces.map(() => '---').join(' | ')} |`);
  for (const st of [...new Set(steps)].sort((a, b) => a - b)) md.push(`| ${st} | ${spaces.map(([s]) => rows.find((r) => r.space === s && r.step === st)?.fd.toFixed(3) ?? 'n/a').join(' | ')} |`);
  // the steps each Kiln space needs to reach a given FD: the thresholds are the Kiln runs' final and best FDs
  const kiln = spaces.map(([s], i) => [s, series[i]!] as const).filter(([s]) => s !== 'torch-fae').map(([, se]) => se);
  const finals = kiln.flatMap((s) => [s.points.at(-1)?.[1], Math.min(...s.points.map(([, fd]) => fd))]).filter((v): v is number => v !== undefined && Number.isFinite(v));
  const first = (s: Series, t: number) => s.points.find(([, fd]) => fd <= t)?.[0];
  md.push('', `| FD at most | ${kiln.map((s) => `steps, ${s.name.replace('LightningDiT on ', '')}`).join(' | ')} |`, `| --- | ${kiln.map(() => '---').join(' | ')} |`);
  for (const t of [...new Set(finals)].sort((a, b) => b - a)) md.push(`| ${t.toFixed(3)} | ${kiln.map((s) => first(s, t) ?? 'not reached').join(' | ')} |`);
  md.push('');
  for (const [s, label] of spaces.filter(([s]) => s !== 'torch-fae')) { // the last checkpoint's curve samples of each Kiln space
    const last = readdirSync(samples).map((f) => new RegExp(`^curve-${s}-step-(\\d+)\\.png$`).exec(f)).filter((m) => m !== null).sort((a, b) => Number(a![1]) - Number(b![1])).at(-1);
    if (last) link(await topRows(join(samples, last[0]), join(img, `${prefix}-curve-${s}-last.png`), Number(o['curve-samples'])), `LightningDiT on ${label}, step ${Number(last[1])} (25 Euler grid points, no guidance)`);
  }
}
if (o.md) writeFileSync(o.md, `${md.join('\n')}\n`);
else console.log(md.join('\n'));
