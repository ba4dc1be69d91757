/**
 * @file Choosing a backend for `--backend auto|cpu|kernel-cpu|cuda|wgsl`. 'auto' picks cuda where a
 * CUDA driver and a GPU answer, else wgsl where the WebGPU backend is registered (runtime/backends.ts)
 * and a WebGPU adapter exists, else cpu; the choice comes back with the reason, for the CLI to print.
 */
import type { Backend } from '../backends/backend.ts';
import { CudaDriver } from '../backends/cuda/driver.ts';
import { KilnError } from '../ir/errors.ts';
import { BACKENDS } from './backends.ts';

export const BACKEND_CHOICES = ['auto', 'cpu', 'kernel-cpu', 'cuda', 'wgsl'] as const;

export interface BackendChoice {
  backend: Backend;
  reason: string;
}

function cudaProbe(): string | undefined {
  if (!CudaDriver.available()) return 'no CUDA driver (libcuda.so.1) on this machine';
  try {
    const d = CudaDriver.get();
    return d.name ? undefined : 'the CUDA driver reports no device';
  } catch (e) {
    return `the CUDA driver did not start: ${(e as Error).message.split('\n')[0]}`;
  }
}

async function webgpuProbe(): Promise<string | undefined> {
  if (!BACKENDS.wgsl) return 'the wgsl backend is not built into this Kiln yet';
  try {
    const mod = (await import('webgpu')) as unknown as { create(args: string[]): { requestAdapter(): Promise<unknown> } };
    const adapter = await mod.create([]).requestAdapter();
    return adapter ? undefined : 'WebGPU reports no adapter';
  } catch (e) {
    return `WebGPU is not available: ${(e as Error).message.split('\n')[0]}`;
  }
}

export async function chooseBackend(name: string): Promise<BackendChoice> {
  if (name !== 'auto') {
    if (!(BACKEND_CHOICES as readonly string[]).includes(name))
      throw new KilnError(`unknown backend '${name}' (expected one of ${BACKEND_CHOICES.join(', ')})`);
    const b = BACKENDS[name];
    if (!b) throw new KilnError(`backend '${name}' is not available in this build of Kiln yet (available: ${Object.keys(BACKENDS).join(', ')})`);
    return { backend: b, reason: 'as asked' };
  }
  const noCuda = cudaProbe();
  if (!noCuda) return { backend: BACKENDS.cuda!, reason: `auto: a CUDA GPU is present (${CudaDriver.get().name})` };
  const noGpu = await webgpuProbe();
  if (!noGpu) return { backend: BACKENDS.wgsl!, reason: `auto: no CUDA (${noCuda}); a WebGPU adapter is present` };
  return { backend: BACKENDS.cpu!, reason: `auto: no CUDA (${noCuda}); no WebGPU (${noGpu}); using the CPU reference interpreter` };
}
