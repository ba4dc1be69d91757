/**
 * @file The `kiln` command line (commander). Each command lives in cli/commands/<name>.ts and exports
 * `register(program)`; adding a command is one file and one line in COMMANDS. Errors: cli/errors.ts
 * (user errors one line, exit 2; internal errors exit 1; KILN_DEBUG=1 adds stack traces).
 */
import { Command, CommanderError } from 'commander';
import * as bench from './commands/bench.ts';
import * as compile from './commands/compile.ts';
import * as demo from './commands/demo.ts';
import * as evaluate from './commands/eval.ts';
import * as exportCmd from './commands/export.ts';
import * as golden from './commands/golden.ts';
import * as ir from './commands/ir.ts';
import * as pipeline from './commands/pipeline.ts';
import * as sample from './commands/sample.ts';
import * as serve from './commands/serve.ts';
import * as train from './commands/train.ts';
import { EXIT_USER, reportError } from './errors.ts';

const COMMANDS: ReadonlyArray<{ register(program: Command): void }> = [compile, ir, train, sample, exportCmd, serve, evaluate, pipeline, golden, bench, demo];

const ENVIRONMENT = `
Environment:
  KILN_DEBUG              1: stack traces on errors; ir, passes, kernels: print the IR after each stage;
                          source: every generated kernel's source (CUDA, WGSL); all: everything
  KILN_PRECISION          default precision (f32, bf16, f16) instead of the backend's
  KILN_FASHION_MNIST_DIR  folder of the Fashion-MNIST .gz files (default /usr/share/datasets/fashion-mnist)
  KILN_CACHE_DIR          cache of compiled CUDA kernels, GEMM tuning and generated WGSL
  VK_ICD_FILENAMES        the Vulkan driver Dawn uses for --backend wgsl (SwiftShader without a GPU)`;

export function buildCli(): Command {
  const program = new Command('kiln')
    .description('a compiler for neural-network programs written in TypeScript')
    .showSuggestionAfterError(true)
    .addHelpText('after', ENVIRONMENT);
  for (const c of COMMANDS) c.register(program);
  const configure = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ outputError: (s, write) => write(`${cmd.name() === 'kiln' ? 'kiln' : `kiln ${cmd.name()}`}: ${s.replace(/^error: /, '').trim()}\n`) });
    cmd.commands.forEach(configure);
  };
  configure(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT_USER;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') return 0;
      return EXIT_USER; // commander already printed the one-line message
    }
    return reportError(e, `kiln ${argv[0]}`);
  }
}
