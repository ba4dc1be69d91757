/**
 * @file Data time vs step time of training runs (issue 12): writes an image folder of JPEGs (sharp),
 * or summarizes a run's metrics.jsonl. `tsx bench/dataTime.ts images DIR N SIDE` writes N random
 * SIDE×SIDE JPEGs in 10 class folders; `tsx bench/dataTime.ts summary LABEL RUN_DIR` prints one table
 * row: steps, median and mean data_ms (how long the trainer waited for the prefetched batch) and
 * step_ms (feeds + device step + fetch of the loss), over the steps after the first 5 (compile warm-up).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'images') {
  const [dir, n, side] = [args[0]!, Number(args[1]), Number(args[2])];
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const cls = join(dir, `c${i % 10}`);
    mkdirSync(cls, { recursive: true });
    const px = Buffer.alloc(side * side * 3);
    for (let j = 0; j < px.length; j++) px[j] = Math.floor(rnd() * 256);
    jobs.push(sharp(px, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(cls, `${i}.jpg`)));
  }
  await Promise.all(jobs);
  console.log(`${n} JPEGs ${side}x${side} in ${dir}`);
} else if (cmd === 'summary') {
  const [label, run] = [args[0]!, args[1]!];
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as { data_ms: number; step_ms: number });
  const rest = lines.slice(5);
  const med = (v: number[]) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
  const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
  const d = rest.map((l) => l.data_ms), t = rest.map((l) => l.step_ms);
  console.log(`| ${label} | ${lines.length} | ${med(d).toFixed(3)} | ${avg(d).toFixed(3)} | ${med(t).toFixed(3)} | ${avg(t).toFixed(3)} | ${(100 * avg(d) / (avg(d) + avg(t))).toFixed(1)}% |`);
} else {
  console.error('usage: tsx bench/dataTime.ts images DIR N SIDE | summary LABEL RUN_DIR');
  process.exit(2);
}
