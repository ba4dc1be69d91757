/**
 * @file Option parsers and shared options of the `kiln` commands (commander). A bad value throws
 * commander's InvalidArgumentError, which main.ts prints as one line and exit code 2.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_REMAT } from '../compiler/compile.ts';
import { BACKEND_CHOICES } from '../runtime/backendChoice.ts';

export function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`'${v}' is not a non-negative integer.`);
  return n;
}
export function positiveInt(v: string): number {
  const n = int(v);
  if (n < 1) throw new InvalidArgumentError(`'${v}' is not a positive integer.`);
  return n;
}
export function num(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`'${v}' is not a number.`);
  return n;
}
export function intList(v: string): number[] {
  return v.split(',').map((s) => positiveInt(s.trim()));
}

/** --remat: rematerialization of a training step (compiler/transforms/remat.ts). */
export function rematOption(): Option {
  return new Option('--remat <mode>', 'rematerialization: off (keep every forward value the backward reads), fused (recompute the elementwise chains that fold into the backward\'s elementwise and row kernels, never a matmul operand), ' +
    'cheap (recompute every elementwise chain in the backward), ' +
    'blocks (activation checkpointing: recompute each repeated block from its input), auto, the default (the fastest that fits the device\'s free memory: fused, else cheap, else blocks)')
    .choices(['off', 'fused', 'cheap', 'blocks', 'auto']).default(DEFAULT_REMAT);
}

/** Bytes from '40GB', '3.5GiB', '512MB' or a plain number of bytes. */
export function bytesArg(v: string): number {
  const m = /^\s*([0-9.]+)\s*(|B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$/i.exec(v);
  const n = m ? Number(m[1]) : NaN;
  if (!m || !Number.isFinite(n)) throw new InvalidArgumentError(`'${v}' is not a size (a number of bytes, or e.g. 40GB, 31.4GiB).`);
  const unit = m[2]!.toLowerCase();
  const scale: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };
  return Math.round(n * scale[unit]!);
}

const BACKEND_HELP = 'backend: auto picks cuda (GPU + driver), else wgsl (WebGPU adapter), else cpu';
export function backendOption(dflt?: string): Option {
  if (dflt) return new Option('--backend <name>', BACKEND_HELP).choices(BACKEND_CHOICES).default(dflt);
  return new Option('--backend <name>', `${BACKEND_HELP} (default: the job's, auto)`).choices(BACKEND_CHOICES);
}
export function precisionOption(dflt?: string): Option {
  if (dflt) return new Option('--precision <p>', 'compute precision: matmul/attention operands in bf16/f16 (autocast), or f32').choices(['f32', 'bf16', 'f16']).default(dflt);
  return new Option('--precision <p>', "compute precision: matmul/attention operands in bf16/f16 (autocast), or f32 (default: the job's, else the backend's: bf16 on cuda, f32 elsewhere)").choices(['f32', 'bf16', 'f16']);
}

/** Options for naming a program: a built-in name or a model file, batch, size, forward or training step. */
export function programOptions(cmd: Command): Command {
  return cmd
    .option('--train', 'the whole training step (forward, backward, optimizer) instead of the forward pass', false)
    .option('--batch <n>', 'batch size', positiveInt, 8)
    .option('--size <s>', "model size or preset (see `kiln compile --help`) (default: the program's)");
}
