/**
 * Dawn robustness (Tint's bounds clamps) on the WGSL backend (backends/wgsl/device.ts): off by default
 * in Node on a real GPU adapter, on on a CPU adapter (SwiftShader, CI), KILN_WGSL_ROBUSTNESS=on|off or
 * the `robustness` option to choose. Checks the rule, the device it gives on this machine's adapter,
 * and that generated kernels without the clamps still equal the CPU interpreter (random graphs: every
 * kernel kind's own guards are what keeps its accesses in bounds; docs/wgsl-robustness.md).
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { isCpuAdapter, wgslDevice, wgslRobustness } from '../../backends/wgsl/device.ts';
import { WGSL_ROBUSTNESS_ENV, wgslRobustnessFromEnv } from '../../runtime/backends.ts';
import { wgslBackendWith } from '../../backends/wgsl/executable.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { firstMismatch } from '../support/compare.ts';
import { randomFeeds, randomGraph } from '../support/randomGraph.ts';

const info = (o: Partial<GPUAdapterInfo>) => ({ vendor: '', architecture: '', device: '', description: '', ...o }) as GPUAdapterInfo;

describe('robustness', () => {
  it('the rule: the option, else KILN_WGSL_ROBUSTNESS, else on exactly on a CPU adapter', () => {
    expect(wgslRobustness(undefined, false)).toBe(false);
    expect(wgslRobustness(undefined, true)).toBe(true);
    expect(wgslRobustness(true, false)).toBe(true);
    expect(wgslRobustness(false, true)).toBe(false);
    expect(wgslRobustnessFromEnv(undefined)).toBe(undefined);
    expect(wgslRobustnessFromEnv('')).toBe(undefined);
    expect(wgslRobustnessFromEnv('on')).toBe(true);
    expect(wgslRobustnessFromEnv('off')).toBe(false);
    expect(() => wgslRobustnessFromEnv('yes')).toThrow(/KILN_WGSL_ROBUSTNESS="yes": want 'on' or 'off'/);
  });

  it('tells CPU adapters (SwiftShader, fallback adapters) from GPUs', () => {
    expect(isCpuAdapter(info({ vendor: 'google', architecture: 'swiftshader', description: 'SwiftShader Device (Subzero)' }))).toBe(true);
    expect(isCpuAdapter(info({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }))).toBe(true);
    expect(isCpuAdapter({ ...info({ vendor: 'x' }), isFallbackAdapter: true } as GPUAdapterInfo)).toBe(true);
    expect(isCpuAdapter(info({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA: 580.159.04 580.159.4.0' }))).toBe(false);
  });

  it('the default device: robustness on on SwiftShader, off on a GPU; the option turns it either way', async () => {
    const def = await wgslDevice();
    expect(def.robustness, def.adapterInfo).toBe(/swiftshader/i.test(def.adapterInfo));
    expect((await wgslDevice({ robustness: true })).robustness).toBe(true);
    expect((await wgslDevice({ robustness: false })).robustness).toBe(false);
  });

  it(`${WGSL_ROBUSTNESS_ENV}=on / off gives the device that robustness (as the option does)`, async () => {
    // Distinct option sets: a device per set.
    expect((await wgslDevice({ maxStorageBuffersPerShaderStage: 11, robustness: wgslRobustnessFromEnv('off')! })).robustness).toBe(false);
    expect((await wgslDevice({ maxStorageBuffersPerShaderStage: 10, robustness: wgslRobustnessFromEnv('on')! })).robustness).toBe(true);
  });

  it('random graphs 0..39 without the clamps equal the CPU interpreter', async () => {
    const be = wgslBackendWith({ robustness: false });
    expect((await be.device()).robustness).toBe(false);
    const bad: string[] = [];
    for (let s = 0; s < 40; s++) {
      const g = randomGraph(s, { finiteF32: true });
      const f = randomFeeds(g, s);
      const got = await runOnBackend(be, g, f);
      const want = runGraph(g, f);
      for (const o of g.outputs) {
        const m = firstMismatch(got[o.name]!.data, want[o.name]!.data, 1e-3);
        if (m) bad.push(`seed ${s} output ${o.name}: ${m}`);
      }
    }
    expect(bad).toEqual([]);
  }, 300_000);
});
