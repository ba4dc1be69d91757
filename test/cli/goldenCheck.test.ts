/**
 * `kiln golden check` over every stored golden: the list covers every file in golden/data (but the two
 * left to their own tests), one model's goldens pass on the CPU backend, all of them pass in-process
 * (so `npm test` runs what the command runs), and a corrupted copy of a golden (written to a temp dir,
 * read through --dir) fails with exit 1, naming the file and the output.
 */
import { cpSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { goldenChecks } from '../../golden/checks.ts';
import { loadSafetensors, saveSafetensors } from '../../runtime/safetensors.ts';
import { REPO, kiln } from '../support/kilnCli.ts';

const DATA = join(REPO, 'golden', 'data');
/** Checked elsewhere: ViT-B DINOv2 (test/models/dinov2.test.ts), the file-format interop golden (test/runtime/safetensors.test.ts). */
const ELSEWHERE = new Set(['dinov2/base.io.safetensors', 'dinov2/base_reg.io.safetensors', 'safetensors_interop.safetensors']);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

/** Add `delta` to element 0 of tensor `key` of the safetensors file `path`, keeping its metadata. */
function corrupt(path: string, key: string, delta: number): void {
  const { tensors, metadata } = loadSafetensors(path);
  const t = tensors.get(key)!;
  const data = Float32Array.from(t.data as Float32Array);
  data[0] = data[0]! + delta;
  tensors.set(key, { ...t, data });
  saveSafetensors(path, tensors, metadata);
}

describe('kiln golden check: every golden', () => {
  it('--list names a check for every golden tensor file in golden/data', () => {
    const r = kiln(['golden', 'check', '--list']);
    expect(r.code, r.stderr).toBe(0);
    const listed = new Set(r.stdout.trim().split('\n').map((l) => relative(DATA, /\((.*)\)$/.exec(l)![1]!)));
    for (const f of files(DATA).map((p) => relative(DATA, p)).filter((p) => p.endsWith('.safetensors') && !ELSEWHERE.has(p)))
      if (!/^dinov2\/tiny(_reg|_swiglu)?\.safetensors$/.test(f)) expect(listed, f).toContain(f); // the dinov2 weights are read by their .io runs
    for (const family of ['nn/', 'dinov2/', 'lightningdit/', 'tarflow/', 'fae/', 'losses/', 'optim/', 'inception/']) expect(r.stdout).toContain(`\n${family}`);
  });

  it('one model by name passes on the CPU backend, every output printed with its tolerance', () => {
    const r = kiln(['golden', 'check', 'tarflow/tiny_starflow', '--backend', 'cpu']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const o of ['z', 'logdet', 'loss', 'bpd']) expect(r.stdout).toMatch(new RegExp(`ok {3}tarflow/tiny_starflow ${o}: max err [\\d.e+-]+ \\(tolerance [\\d.e+-]+\\)`));
    expect(r.stdout).toMatch(/ok {3}tarflow\/tiny_starflow grad\.\S+: max err/);
    expect(r.stdout).toMatch(/1 of 1 goldens pass/);
  });

  it('every check passes in-process on the CPU backend', async () => {
    const failed: string[] = [];
    for (const c of goldenChecks()) for (const row of await c.run(cpuBackend)) if (!row.ok) failed.push(`${c.name} ${row.output}: ${row.maxErr} > ${row.bound}`);
    expect(failed).toEqual([]);
  }, 120_000);

  it('a corrupted copy fails (exit 1) naming the file and the output', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-golden-'));
    cpSync(DATA, dir, { recursive: true });
    const flow = join(dir, 'tarflow', 'tiny_starflow.safetensors');
    corrupt(flow, 'output.logdet', 1e-2);
    const mse = join(dir, 'losses.safetensors');
    corrupt(mse, 'mse.grad.a', 1e-3);
    const r = kiln(['golden', 'check', 'tiny_starflow', '--backend', 'cpu', '--dir', dir]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`FAIL tarflow/tiny_starflow logdet: max err [\\d.e+-]+ \\(tolerance [\\d.e+-]+\\) in ${flow}`));
    expect(r.stdout).toContain(`failed: ${flow}: logdet`);
    expect(r.stdout).toMatch(/0 of 1 goldens pass/);
    const l = kiln(['golden', 'check', 'losses/', '--backend', 'cpu', '--dir', dir]);
    expect(l.code).toBe(1);
    expect(l.stdout).toContain(`failed: ${mse}: grad.a`);
    expect(l.stdout).toMatch(/6 of 7 goldens pass/);
    // The untouched repository copy still passes.
    expect(kiln(['golden', 'check', 'losses/', '--backend', 'cpu']).code).toBe(0);
  });
});
