/**
 * @file The PROGRAM argument of `kiln ir` and `kiln compile`: a built-in program name (cli/programs.ts)
 * or a user's model file (cli/userModel.ts), traced as a forward pass or a training step; `dinov2` with
 * `--checkpoint DIR` is the pretrained model of an HF-format directory (models/pretrained.ts).
 */
import { trainStep } from '../compiler/transforms/trainStep.ts';
import { KilnError } from '../ir/errors.ts';
import type { Graph } from '../ir/graph.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { traceDinov2 } from '../models/dinov2.ts';
import { loadPretrained } from '../models/pretrained.ts';
import { buildProgram } from './programs.ts';
import { isModelFile, loadUserModel, traceUserModel } from './userModel.ts';

export interface ProgramArgOptions {
  train: boolean;
  batch: number;
  size?: string;
  checkpoint?: string;
  imageSize?: [number, number];
}

export async function resolveProgram(name: string, o: ProgramArgOptions): Promise<{ graph: Graph; weights?: Map<string, HostTensor>; note?: string }> {
  if (isModelFile(name)) {
    const u = await loadUserModel(name);
    const fwd = traceUserModel(u, o.batch);
    if (!o.train) return { graph: fwd };
    if (!fwd.output('loss')) throw new KilnError(`${name}: --train needs program() to return a scalar \`loss\``);
    return { graph: trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw' } }) };
  }
  if (o.checkpoint) {
    if (name !== 'dinov2') throw new KilnError(`--checkpoint: only 'dinov2' loads pretrained HF checkpoints (got '${name}')`);
    if (o.train) throw new KilnError('dinov2 is a frozen encoder: there is no training step (drop --train)');
    const p = loadPretrained(o.checkpoint);
    const [height, width] = o.imageSize ?? p.config.imageSize;
    return {
      graph: traceDinov2(p.model, { batch: o.batch, height, width }),
      weights: p.weights,
      note: `${o.checkpoint}: ${p.config.variant}, ${p.config.numLayers} layers, width ${p.config.hiddenSize}, ${p.weights.size} tensors; ${height}x${width} px` +
        `${height !== p.config.imageSize[0] || width !== p.config.imageSize[1] ? ` (position embeddings interpolated from ${p.config.imageSize.join('x')})` : ''}`,
    };
  }
  if (o.imageSize && name !== 'dinov2') throw new KilnError(`--image-size applies to dinov2 only`);
  if (name === 'dinov2' && o.imageSize) {
    const { Dinov2Model, dinov2Config } = await import('../models/dinov2.ts');
    if (o.train) throw new KilnError('dinov2 is a frozen encoder: there is no training step (drop --train)');
    const model = new Dinov2Model(dinov2Config((o.size ?? 'b') as 's'));
    return { graph: traceDinov2(model, { batch: o.batch, height: o.imageSize[0], width: o.imageSize[1] }) };
  }
  return { graph: buildProgram(name, { train: o.train, batch: o.batch, size: o.size }) };
}
