/**
 * @file `kiln ir PROGRAM`: print the Graph IR of a built-in program or a user's model file.
 */
import type { Command } from 'commander';
import { printGraph } from '../../ir/printer.ts';
import { type Precision, atPrecision } from '../../runtime/compile.ts';
import { precisionOption, programOptions } from '../options.ts';
import { resolveProgram } from '../programArg.ts';

export function register(program: Command): void {
  programOptions(program.command('ir').description('print the Graph IR of a program (forward pass, or its training step with --train)'))
    .argument('<program>', 'a built-in program (mlp, block, lightningdit, dinov2, tarflow, fae) or a model file ./my-model.ts')
    .addOption(precisionOption('f32'))
    .action(async (name: string, o: { train: boolean; batch: number; size?: string; precision: Precision }) => {
      const { graph } = await resolveProgram(name, o);
      process.stdout.write(printGraph(atPrecision(graph, o.precision))); // bf16/f16: the casts autocast inserts
    });
}
