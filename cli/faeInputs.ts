/**
 * @file What `kiln sample --fae` and `kiln export --target web` read besides the generator: the FAE
 * checkpoint(s) whose decoders turn latents into images (a comma list merges them, later ones win), and
 * the per-channel latent stats to undo (--latent-stats FILE, else the checkpoint metadata's latent_stats).
 */
import { readFileSync } from 'node:fs';
import { KilnError } from '../ir/errors.ts';
import type { HostTensor } from '../ir/tensor.ts';
import type { LatentStats } from '../models/sampling/latentStats.ts';
import { loadGeneratorWeights } from './generators.ts';

export function faeWeightsFrom(faePath: string, warn: (s: string) => void): Map<string, HostTensor> {
  const m = new Map<string, HostTensor>();
  for (const p of faePath.split(',')) for (const [k, v] of loadGeneratorWeights(p, warn).model) m.set(k, v);
  return m;
}

export function latentStatsFor(file: string | undefined, meta: Record<string, string>, from: string, log: (s: string) => void, warn: (s: string) => void): LatentStats | undefined {
  const parse = (text: string, what: string): LatentStats => {
    let s: LatentStats;
    try {
      s = JSON.parse(text) as LatentStats;
    } catch (e) {
      throw new KilnError(`${what}: not JSON: ${(e as Error).message}`);
    }
    if (!Array.isArray(s.mean) || !Array.isArray(s.std)) throw new KilnError(`${what}: expected {"mean": [...], "std": [...]}`);
    return s;
  };
  if (file) return parse(readFileSync(file, 'utf8'), file);
  if (meta.latent_stats) {
    log(`latent stats from ${from} (the training job's per-channel normalization), undone before decoding`);
    return parse(meta.latent_stats, `${from}: metadata latent_stats`);
  }
  warn('no latent stats (--latent-stats): decoding the latents as sampled');
  return undefined;
}
