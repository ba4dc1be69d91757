/**
 * @file The CUDA backend's errors, worded for the person running Kiln: no NVIDIA driver, a driver
 * without a GPU, NVRTC failing on a generated kernel (the kernel's name and the source around the
 * failing line), and a step that does not fit in device memory (the plan's figures, the device's free
 * memory, what to do). Every one is a KilnError, so the CLI prints it as a user error, never a stack.
 */
import { KilnError } from '../../ir/errors.ts';

/** A driver, NVRTC or cuBLAS call failed; `code` is CUDA's error code where there is one. */
export class CudaError extends KilnError {
  override name = 'CudaError';
  constructor(message: string, readonly code?: number) {
    super(message);
  }
}

export const CUDA_ERROR_OUT_OF_MEMORY = 2;
export const CUDA_ERROR_NO_DEVICE = 100;
export const CUDA_ERROR_NOT_READY = 600;
const CUDA_ERROR_INSUFFICIENT_DRIVER = 35;

const ALTERNATIVES = 'use --backend cpu, kernel-cpu or wgsl (or --backend auto) on a machine without one';

/** libcuda could not be loaded. */
export function noDriverError(detail: string): CudaError {
  return new CudaError(`no NVIDIA driver: the cuda backend needs an NVIDIA GPU and its driver (libcuda.so.1), and ${detail.replace(/^cannot load /, 'could not load ')}; ${ALTERNATIVES}`);
}

/** cuInit (or the first device query) failed: no GPU, or a driver too old for this CUDA. */
export function driverStartError(call: string, code: number, message: string): CudaError {
  if (code === CUDA_ERROR_NO_DEVICE) return new CudaError(`no CUDA GPU: the NVIDIA driver is installed but finds no device (${call}: ${message}); ${ALTERNATIVES}`, code);
  if (code === CUDA_ERROR_INSUFFICIENT_DRIVER) return new CudaError(`the NVIDIA driver is older than this CUDA runtime (${call}: ${message}); update the driver or ${ALTERNATIVES}`, code);
  return new CudaError(`the CUDA driver did not start (${call}: ${message})`, code);
}

/** An error whose whole (multi-line) message is for the user: the CLI prints every line. */
export class NvrtcError extends CudaError {
  override name = 'NvrtcError';
  readonly multiline = true;
  /** The generated function holding the first error, where the log names a line inside one. */
  constructor(message: string, code?: number, readonly fn?: string) {
    super(message, code);
  }
}

/**
 * The NVRTC error with the kernels of the program that call its function named (kernel functions are
 * shared by every kernel with the same structure, so only the caller knows them); other errors as they are.
 */
export function withKernelNames(e: unknown, kernelsOf: (fn: string) => readonly string[]): unknown {
  if (!(e instanceof NvrtcError) || !e.fn) return e;
  const names = kernelsOf(e.fn);
  if (!names.length) return e;
  const list = `${names.length > 1 ? 'kernels' : 'kernel'} ${names.slice(0, 4).join(', ')}${names.length > 4 ? `, and ${names.length - 4} more` : ''}`;
  return new NvrtcError(e.message.replace(`function ${e.fn}`, `function ${e.fn} (${list})`), e.code, e.fn);
}

/**
 * NVRTC rejected a generated module: name the function whose part of the source holds the first error
 * (its `extern "C" __global__` line; a `// <kernel name>` line above it names the kernel too) and show
 * the source lines around it. withKernelNames adds the kernels that call the function.
 */
export function nvrtcFailure(label: string, source: string, status: string, log: string, code?: number): NvrtcError {
  const lines = source.split('\n');
  const m = /\((\d+)\): (?:catastrophic )?error[^:]*: (.*)/.exec(log);
  if (!m) return new NvrtcError(`NVRTC could not compile ${label}: ${status}\n${log.slice(0, 4000)}`, code);
  const line = Number(m[1]); // 1-based
  let kernel: string | undefined, fn: string | undefined;
  for (let i = Math.min(line, lines.length) - 1; i >= 0 && !kernel; i--) {
    const l = lines[i]!;
    const f = /^extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?(\w+)\(/.exec(l);
    if (f && !fn) fn = f[1];
    const k = /^\/\/ (k\d+_\S+)/.exec(l);
    if (k) kernel = k[1];
  }
  const from = Math.max(0, line - 4), to = Math.min(lines.length, line + 3);
  const context = lines.slice(from, to).map((l, i) => `${String(from + i + 1).padStart(6)}${from + i + 1 === line ? ' >' : '  '} ${l}`);
  const where = kernel ? `kernel ${kernel}${fn ? ` (function ${fn})` : ''}` : fn ? `function ${fn}` : 'the module prelude';
  return new NvrtcError(`NVRTC could not compile ${where} of ${label}: line ${line}: ${m[2]!.trim()} (${status})\n${context.join('\n')}\n${log.slice(0, 2000)}`, code, fn);
}

/** A device allocation failed for lack of memory. */
export class DeviceMemoryError extends CudaError {
  override name = 'DeviceMemoryError';
  constructor(readonly requested: number, readonly free: number, readonly total: number) {
    super(`out of device memory: ${gib(requested)} requested, ${gib(free)} free of ${gib(total)}`, CUDA_ERROR_OUT_OF_MEMORY);
  }
}

/** Bytes for people: GiB, MiB or KiB. */
export function gib(n: number): string {
  if (!Number.isFinite(n)) return 'unknown';
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 2 ** 10).toFixed(1)} KiB`;
}

/** The parts of a program's device memory, as the report and the OOM message show them. */
export interface DeviceMemoryFigures {
  readonly program: string;
  readonly parameters: number;
  readonly state: number;
  readonly io: number;
  readonly arena: number;
  readonly total: number;
}

/** The step does not fit: the plan's figures, the device's free memory and what to do. */
export function outOfMemory(m: DeviceMemoryFigures, device: string, free: number, total: number): CudaError {
  return new CudaError(
    `out of device memory: program ${m.program} needs ${gib(m.total)} on the device (parameters ${gib(m.parameters)}, state ${gib(m.state)}, ` +
      `inputs/outputs ${gib(m.io)}, arena ${gib(m.arena)} at the plan's peak) but ${device} has ${gib(free)} free of ${gib(total)}; ` +
      'lower the batch, or use --remat blocks to recompute activations in the backward pass',
    CUDA_ERROR_OUT_OF_MEMORY,
  );
}
