/**
 * @file Per-image cost of sharp on the machine it runs on (issue 12, epoch-1 decode): plain Node, no tsx.
 * `node bench/dataTime.probe.mjs images DIR N SIDE` writes N random SIDE×SIDE JPEGs in DIR/c0 (one class: an image folder);
 * `node bench/dataTime.probe.mjs seq DIR N` times N pipelines one after another (wall and CPU µs per image)
 * for a no-op raw pipeline, metadata(), decode only, and the loader's pipeline (resize 28 cover linear, greyscale);
 * `node bench/dataTime.probe.mjs par DIR N P [FIRST]` runs the loader's pipeline on N images, P at a time,
 * and prints one JSON line {n, wallMs, cpuMs} (run it in several processes at once to compare with threads).
 */
import { readdirSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

sharp.concurrency(1);
sharp.cache(false);
const [cmd, dir, a, b, c] = process.argv.slice(2);
const pipeline = (f) => sharp(f, { failOn: 'error' }).resize(28, 28, { fit: 'cover', position: 'centre', kernel: 'linear' }).greyscale().raw().toBuffer({ resolveWithObject: true });
const list = () => readdirSync(join(dir, 'c0')).filter((f) => f.endsWith('.jpg')).sort().map((f) => join(dir, 'c0', f));
if (cmd === 'images') {
  mkdirSync(join(dir, 'c0'), { recursive: true });
  const n = Number(a), side = Number(b);
  let s = 12345;
  const jobs = [];
  for (let i = 0; i < n; i++) {
    const px = Buffer.alloc(side * side * 3);
    for (let j = 0; j < px.length; j++) px[j] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    jobs.push(sharp(px, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(dir, 'c0', `${String(i).padStart(5, '0')}.jpg`)));
  }
  await Promise.all(jobs);
} else if (cmd === 'seq') {
  const files = list().slice(0, Number(a));
  const raw = Buffer.alloc(64 * 64 * 3, 7);
  const ops = {
    'noop raw->raw': () => sharp(raw, { raw: { width: 64, height: 64, channels: 3 } }).raw().toBuffer(),
    'metadata': (f) => sharp(f).metadata(),
    'decode only': (f) => sharp(f).raw().toBuffer(),
    'loader pipeline': pipeline,
  };
  for (const [name, op] of Object.entries(ops)) {
    await op(files[0]);
    const c0 = process.cpuUsage(), t0 = performance.now();
    for (const f of files) await op(f);
    const wall = performance.now() - t0, cpu = process.cpuUsage(c0);
    console.log(`| ${name} | ${files.length} | ${((wall / files.length) * 1000).toFixed(0)} | ${((cpu.user + cpu.system) / files.length).toFixed(0)} |`);
  }
} else if (cmd === 'par') {
  const first = Number(c ?? 0), files = list().slice(first, first + Number(a)), P = Number(b);
  await pipeline(files[0]);
  const c0 = process.cpuUsage(), t0 = performance.now();
  let i = 0;
  await Promise.all(Array.from({ length: P }, async () => { while (i < files.length) await pipeline(files[i++]); }));
  const cpu = process.cpuUsage(c0);
  console.log(JSON.stringify({ n: files.length, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 }));
}
