/**
 * Checkpoints: round trip, PyTorch key names, and crash safety (an interrupted save never loses
 * the last good checkpoint).
 */
import { existsSync, mkdtempSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { type Checkpoint, joinResident, loadCheckpoint, saveCheckpoint, splitResident } from '../../runtime/checkpoint.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';

function ck(v: number): Checkpoint {
  return {
    model: new Map([['layers.0.weight', hostTensor('f32', [2, 2], [v, v + 1, v + 2, v + 3])]]),
    ema: new Map([['layers.0.weight', hostTensor('f32', [2, 2], [v, v, v, v])]]),
    trainState: new Map([['optim.step', hostTensor('f32', [], [v])], ['optim.exp_avg.layers.0.weight', hostTensor('f32', [2, 2])]]),
    meta: { step: String(v) },
  };
}

describe('checkpoints', () => {
  it('round trip, with the model file holding exactly the PyTorch keys', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'kiln-ck-')), 'run');
    saveCheckpoint(dir, ck(7));
    const back = loadCheckpoint(dir);
    expect(Array.from(back.model.get('layers.0.weight')!.data)).toEqual([7, 8, 9, 10]);
    expect(Array.from(back.ema.get('layers.0.weight')!.data)).toEqual([7, 7, 7, 7]);
    expect(back.trainState.get('optim.step')!.data[0]).toBe(7);
    expect(back.meta.step).toBe('7');
    expect([...loadSafetensors(join(dir, 'model.safetensors')).tensors.keys()]).toEqual(['layers.0.weight']);
  });

  it('a second save replaces the first and leaves no temporary directories', () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-ck-'));
    const dir = join(root, 'run');
    saveCheckpoint(dir, ck(1));
    saveCheckpoint(dir, ck(2));
    expect(loadCheckpoint(dir).meta.step).toBe('2');
    expect(readdirSync(root)).toEqual(['run']);
  });

  it('a save that crashes mid-write leaves the last good checkpoint intact', () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-ck-'));
    const dir = join(root, 'run');
    saveCheckpoint(dir, ck(1));
    // A tensor whose data does not match its shape makes the writer throw half-way through.
    const bad = ck(2);
    bad.trainState.set('broken', { dtype: 'f32', shape: [3], data: new Float32Array(1) } as HostTensor);
    expect(() => saveCheckpoint(dir, bad)).toThrow();
    expect(loadCheckpoint(dir).meta.step).toBe('1');
    expect(readdirSync(root)).toEqual(['run']);
  });

  it('loads the old checkpoint when a crash happened between the two renames', () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-ck-'));
    const dir = join(root, 'run');
    saveCheckpoint(dir, ck(3));
    renameSync(dir, `${dir}.old-12345`); // simulate: old moved aside, new not yet in place
    expect(existsSync(dir)).toBe(false);
    expect(loadCheckpoint(dir).meta.step).toBe('3');
  });

  it('names the directory when it is not a checkpoint, and the file when a file is corrupt', () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-ck-'));
    expect(() => loadCheckpoint(join(root, 'nothing'))).toThrow(/nothing: not a checkpoint/);
    const dir = join(root, 'run');
    saveCheckpoint(dir, ck(1));
    writeFileSync(join(dir, 'model.safetensors'), new Uint8Array([1, 2, 3]));
    expect(() => loadCheckpoint(dir)).toThrow(/model\.safetensors/);
  });

  it('splits session values into model / ema / train state and joins them back', () => {
    const values = joinResident(ck(5));
    expect([...values.keys()].sort()).toEqual(['ema.layers.0.weight', 'layers.0.weight', 'optim.exp_avg.layers.0.weight', 'optim.step']);
    const split = splitResident(values, ['layers.0.weight']);
    expect([...split.model.keys()]).toEqual(['layers.0.weight']);
    expect([...split.ema.keys()]).toEqual(['layers.0.weight']);
    expect([...split.trainState.keys()].sort()).toEqual(['optim.exp_avg.layers.0.weight', 'optim.step']);
  });
});
