/**
 * @file The backends by name: 'cpu' (the Graph IR reference interpreter), 'kernel-cpu' (the compiled
 * kernel program, interpreted on the CPU), 'cuda' (the compiled program on an NVIDIA GPU).
 */
import type { Backend } from '../backends/backend.ts';
import { cpuBackend } from '../backends/cpu/executable.ts';
import { cudaBackend } from '../backends/cuda/executable.ts';
import { kernelCpuBackend } from '../backends/kernel/executable.ts';
import { KilnError } from '../ir/errors.ts';

export const BACKENDS: Readonly<Record<string, Backend>> = { cpu: cpuBackend, 'kernel-cpu': kernelCpuBackend, cuda: cudaBackend };

export function backendByName(name: string): Backend {
  const b = BACKENDS[name];
  if (!b) throw new KilnError(`unknown backend '${name}' (available: ${Object.keys(BACKENDS).join(', ')})`);
  return b;
}
