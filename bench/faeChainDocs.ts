/**
 * @file From a GPU window's fae13chain results (bench/fae_chain_gpu.sh's output, unpacked) to docs/img: small
 * sample grids (the first two rows of each sample grid: 2 samples of every class, LightningDiT with and without
 * CFG, TarFlow with and without guidance; the reconstruction grid as it is) and the FD-against-steps curve PNG
 * (runtime/train/lossPlot.ts) and its markdown table when curves.tsv (space, step, fd, floor) exists.
 *
 *   npx tsx bench/faeChainDocs.ts RESULTS_DIR docs/img PREFIX [SAMPLES 1000] [COLUMNS 20] [CURVE_SAMPLES 500]
 */
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { type Series, writeLossPlot } from '../runtime/train/lossPlot.ts';

const [dir, img, prefix = 'fae-gpu', countArg = '1000', columnsArg = '20', curveCountArg = '500'] = process.argv.slice(2);
const curveCount = Number(curveCountArg);
const gridRows = Math.ceil(Number(countArg) / Number(columnsArg));
if (!dir || !img) {
  console.error('usage: tsx bench/faeChainDocs.ts RESULTS_DIR docs/img [PREFIX] [SAMPLES 1000] [COLUMNS 20]');
  process.exit(2);
}
mkdirSync(img, { recursive: true });
const samples = join(dir, 'samples');
for (const name of ['dit-cfg', 'dit', 'tarflow-cfg', 'tarflow']) {
  const f = join(samples, `${name}.png`);
  if (!existsSync(f)) continue;
  const meta = await sharp(f).metadata();
  // rows of equal height (tiles with their class labels below): keep the first two
  const rows = Math.min(meta.height!, Math.round((2 * meta.height!) / gridRows));
  await sharp(f).extract({ left: 0, top: 0, width: meta.width!, height: rows }).png({ compressionLevel: 9 }).toFile(join(img, `${prefix}-${name}.png`));
  console.log(`${join(img, `${prefix}-${name}.png`)} (${meta.width}x${rows} of ${meta.width}x${meta.height})`);
}
// the last checkpoint's curve samples of both spaces (item 3: the same DiT on FAE latents and on pixels)
const curveSteps = existsSync(samples) ? readdirSync(samples).map((f) => /^curve-(fae|pixels)-(step-\d+)\.png$/.exec(f)).filter((m) => m !== null) : [];
const lastStep = curveSteps.map((m) => m![2]!).sort().at(-1);
for (const space of ['fae', 'pixels']) {
  const f = join(samples, `curve-${space}-${lastStep}.png`);
  if (!lastStep || !existsSync(f)) continue;
  const meta = await sharp(f).metadata();
  const rows = Math.min(meta.height!, Math.round((2 * meta.height!) / Math.ceil(curveCount / Number(columnsArg))));
  await sharp(f).extract({ left: 0, top: 0, width: meta.width!, height: rows }).png({ compressionLevel: 9 }).toFile(join(img, `${prefix}-curve-${space}-last.png`));
  console.log(`${join(img, `${prefix}-curve-${space}-last.png`)} (${lastStep})`);
}
if (existsSync(join(samples, 'reconstructions.png'))) {
  await sharp(join(samples, 'reconstructions.png')).png({ compressionLevel: 9 }).toFile(join(img, `${prefix}-reconstructions.png`));
  console.log(join(img, `${prefix}-reconstructions.png`));
}
const tsv = join(dir, 'curves.tsv');
if (existsSync(tsv)) {
  const rows = readFileSync(tsv, 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'))
    .map(([space, step, fd, floor]) => ({ space: space!, step: Number(step), fd: Number(fd), floor: Number(floor) })).filter((r) => Number.isFinite(r.fd));
  if (rows.length) {
    const series: Series[] = ['fae', 'pixels'].map((s) => ({ name: `LightningDiT on ${s === 'fae' ? 'FAE latents' : 'pixels'}`, points: rows.filter((r) => r.space === s).sort((a, b) => a.step - b.step).map((r) => [r.step, r.fd] as const) }));
    const floors = rows.map((r) => r.floor).filter(Number.isFinite);
    const steps = rows.map((r) => r.step);
    if (floors.length) series.push({ name: 'real-vs-real floor', points: [[Math.min(...steps), floors[0]!], [Math.max(...steps), floors[0]!]] });
    await writeLossPlot(join(img, `${prefix}-fd-curves.png`), series.filter((s) => s.points.length), { title: 'FD in the SSL encoder space vs LightningDiT training steps (same model and budget)' });
    console.log(join(img, `${prefix}-fd-curves.png`));
    const all = [...new Set(steps)].sort((a, b) => a - b);
    console.log('| step | FD, FAE latents | FD, pixels |\n| --- | --- | --- |');
    for (const st of all) console.log(`| ${st} | ${['fae', 'pixels'].map((s) => rows.find((r) => r.space === s && r.step === st)?.fd.toFixed(3) ?? 'n/a').join(' | ')} |`);
  }
}
