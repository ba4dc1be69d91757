/**
 * @file `kiln compile PROGRAM`: compile a built-in program, a user's model file, or a pretrained
 * DINOv2 directory; print the kernel report (FLOPs, bytes, intensity, peak memory), the IR after each
 * stage, or the kernel program; optionally build it for a backend too.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { compile } from '../../compiler/compile.ts';
import { CudaExecutable } from '../../backends/cuda/executable.ts';
import { formatDeviceMemory } from '../../backends/cuda/deviceMemory.ts';
import { formatReport } from '../../compiler/report.ts';
import { printProgram } from '../../ir/kernel/print.ts';
import { type Precision, atPrecision, compileOn } from '../../runtime/compile.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import type { RematMode } from '../../compiler/transforms/remat.ts';
import { bytesArg, precisionOption, programOptions, rematOption } from '../options.ts';
import { PROGRAMS } from '../programs.ts';
import { resolveProgram } from '../programArg.ts';

function imageSize(v: string): [number, number] {
  const parts = v.split(',').map((s) => Number(s.trim()));
  if (parts.length === 1 && parts[0]! > 0 && Number.isInteger(parts[0])) return [parts[0]!, parts[0]!];
  if (parts.length !== 2 || !parts.every((p) => Number.isInteger(p) && p > 0)) throw new InvalidArgumentError(`'${v}' is not H,W (two positive integers).`);
  return [parts[0]!, parts[1]!];
}

interface CompileCliOptions {
  train: boolean;
  batch: number;
  size?: string;
  report: boolean;
  stages: boolean;
  kernels: boolean;
  checkpoint?: string;
  imageSize?: [number, number];
  precision: Precision;
  backend: string;
  remat: RematMode | 'auto';
  freeMemory?: number;
}

export function register(program: Command): void {
  const list = Object.entries(PROGRAMS).map(([k, v]) => `  ${k.padEnd(13)}${v.help}`).join('\n');
  programOptions(program.command('compile').description('compile a program to kernels and report FLOPs, bytes, arithmetic intensity and peak memory'))
    .argument('<program>', 'a built-in program (below), a model file ./my-model.ts, or dinov2 with --checkpoint DIR')
    .option('--report', 'print the kernel report (the default when neither --stages nor --kernels is given)', false)
    .option('--stages', 'print the IR after every compiler stage', false)
    .option('--kernels', 'print the kernel program', false)
    .option('--checkpoint <dir>', 'dinov2: an HF-format directory (config.json + model.safetensors) to load (default: none, random weights)')
    .option('--image-size <H,W>', "dinov2: input image size (default: the checkpoint's own, or 224)", imageSize)
    .addOption(precisionOption('f32'))
    .addOption(rematOption())
    .option('--free-memory <size>', "with --remat auto: the device memory the plan must fit, e.g. 40GB (default: the --backend's free memory, else none: auto stays off)", bytesArg)
    .addOption(new Option('--backend <name>', 'also build the program for this backend (none: compiler only)').choices(['none', 'auto', 'cpu', 'kernel-cpu', 'cuda', 'wgsl']).default('none'))
    .addHelpText('after', `\nBuilt-in programs:\n${list}\n\nExamples:\n  kiln compile lightningdit --size B/1 --train --batch 16\n  kiln compile ./my-model.ts --report\n  kiln compile dinov2 --checkpoint ./dinov2-small --image-size 448,448`)
    .action(async (name: string, o: CompileCliOptions) => {
      const resolved = await resolveProgram(name, o);
      const note = resolved.note;
      const graph = atPrecision(resolved.graph, o.precision); // autocast on the whole program, as compileOn does
      if (note) console.log(note);
      const t0 = performance.now();
      let freeBytes = o.freeMemory;
      const chosen = o.backend !== 'none' ? await chooseBackend(o.backend) : undefined;
      if (o.remat === 'auto' && freeBytes === undefined && chosen) freeBytes = await chosen.backend.freeMemoryBytes?.();
      const c = compile(graph, { remat: o.remat, deviceFreeBytes: freeBytes });
      const ms = performance.now() - t0;
      if (o.kernels) process.stdout.write(printProgram(c.program));
      if (o.report || o.stages || !o.kernels) process.stdout.write(formatReport(c, { stages: o.stages }));
      console.log(`compiled in ${ms.toFixed(0)} ms (precision ${o.precision})`);
      if (chosen) {
        const { backend, reason } = chosen;
        console.log(`backend: ${backend.name} (${reason})`);
        const t1 = performance.now();
        const exe = await compileOn(backend, resolved.graph, { precision: o.precision, remat: o.remat, deviceFreeBytes: freeBytes });
        console.log(`built for ${backend.name} in ${(performance.now() - t1).toFixed(0)} ms`);
        if (exe instanceof CudaExecutable) console.log(formatDeviceMemory(exe.memory));
        exe.dispose();
      }
    });
}
