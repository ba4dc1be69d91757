/**
 * @file The `kiln` command line: `kiln demo`, `kiln train fashion-mlp`, `kiln ir <model>`.
 * Argument parsing uses Node's util.parseArgs; every command prints what it did.
 */
import { parseArgs } from 'node:util';
import { cpuBackend } from '../backends/cpu/executable.ts';
import { runGraph } from '../backends/cpu/interpreter.ts';
import { crossEntropy, trace } from '../compiler/dsl/index.ts';
import { trainStep } from '../compiler/transforms/trainStep.ts';
import { KilnError } from '../ir/errors.ts';
import { printGraph } from '../ir/printer.ts';
import { hostTensor } from '../ir/tensor.ts';
import { verify } from '../ir/verify.ts';
import { MlpClassifier } from '../models/mlp.ts';
import { compile } from '../compiler/compile.ts';
import { formatReport } from '../compiler/report.ts';
import { printProgram } from '../ir/kernel/print.ts';
import { runProgram } from '../backends/kernel/interpreter.ts';
import { PROGRAMS, buildProgram } from './programs.ts';
import { backendByName } from '../runtime/backends.ts';
import { atPrecision } from '../runtime/compile.ts';
import { checkPrecision } from '../compiler/transforms/autocast.ts';
import { runFashionMlp } from './jobs/fashionMlp.ts';

const HELP = () => `kiln: a compiler for neural-network programs written in TypeScript

usage:
  kiln demo [--steps N]            trace a small MLP, show its IR, run it on the CPU backend, compile
                                   it to kernels, and train it on Fashion-MNIST for N steps (default 300)
  kiln train fashion-mlp [options] train the MLP classifier on Fashion-MNIST and report test accuracy
      --epochs N (3)  --batch B (128)  --hidden 256,128  --lr 2e-3  --weight-decay 1e-4  --seed S (0)
      --max-steps N   --data DIR  --checkpoint DIR  --resume  --backend cpu|kernel-cpu|cuda (default cpu)
      --precision bf16|f16|f32     (default: the backend's, bf16 on cuda, f32 elsewhere)
  kiln ir PROGRAM [--train] [--precision bf16|f16|f32]
                                   print the Graph IR of a program (or its training step); bf16/f16
                                   shows the casts autocast inserts (default f32)
  kiln compile PROGRAM [--train] [--report] [--stages] [--kernels] [--precision bf16|f16|f32]

environment:
  KILN_BACKEND             default backend of \`kiln train\` (cpu, kernel-cpu, cuda)
  KILN_DEBUG               ir, passes, kernels, all: print the IR after each stage
  KILN_FASHION_MNIST_DIR   where the Fashion-MNIST .gz files are (default /usr/share/datasets/fashion-mnist)
`;

function num(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new KilnError(`--${name}: '${v}' is not a number`);
  return n;
}

async function demo(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { steps: { type: 'string' } } });
  const steps = num(values.steps, 'steps', 300);
  console.log('1. trace: an MLP 784-64-10 forward pass on a batch of 4, recorded as Graph IR');
  const model = new MlpClassifier({ inputs: 784, hidden: [64], classes: 10 });
  const g = trace('mlp', (t) => ({ logits: model.forward(t.input('x', [4, 784])) }), { params: model });
  verify(g);
  console.log(printGraph(g));
  console.log('2. run it on the CPU backend (the reference interpreter) with seeded initial weights');
  const feeds = Object.fromEntries(model.initState(0));
  feeds.x = hostTensor('f32', [4, 784], Array.from({ length: 4 * 784 }, (_, i) => Math.sin(i)));
  const logits = runGraph(g, feeds).logits!;
  for (let r = 0; r < 4; r++) console.log(`   logits[${r}] = [${Array.from(logits.data.slice(r * 10, r * 10 + 10), (v) => v.toFixed(3)).join(', ')}]`);
  const withLoss = trace('mlp_loss', (t) => {
    const logits = model.forward(t.input('x', [4, 784]));
    return { loss: crossEntropy(logits, t.input('y', [4], 'i32')) };
  }, { params: model });
  const step = trainStep(withLoss, { loss: 'loss', optimizer: { kind: 'adamw' } });
  console.log(`3. differentiate + AdamW: the training step is one program of ${step.nodes.length} ops, ${step.inputs.length} inputs, ${step.outputs.length} outputs`);
  const compiled = compile(step);
  const kinds = compiled.program.kernels.reduce<Record<string, number>>((m, k) => ((m[k.kind] = (m[k.kind] ?? 0) + 1), m), {});
  console.log(`4. compile it: ${compiled.optimized.nodes.length} ops after graph passes → ${compiled.program.kernels.length} kernels (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ')}), ` +
    `temporaries in a ${compiled.plan.arenaBytes} B arena (${compiled.plan.totalBytes} B without reuse)`);
  const fwdProgram = compile(g).program;
  const viaKernels = runProgram(fwdProgram, feeds).logits!;
  let diff = 0;
  for (let i = 0; i < logits.data.length; i++) diff = Math.max(diff, Math.abs(logits.data[i]! - viaKernels.data[i]!));
  console.log(`   the forward pass compiled to ${fwdProgram.kernels.length} kernels and run by the kernel interpreter matches the reference: max |Δ| = ${diff.toExponential(1)}`);
  console.log(`5. train on Fashion-MNIST for ${steps} steps on the CPU backend`);
  const r = await runFashionMlp({ backend: cpuBackend, epochs: 1, batch: 64, hidden: [64], lr: 3e-3, weightDecay: 1e-4, seed: 0, maxSteps: steps, logEvery: 50 });
  console.log(`done: loss ${r.firstLoss.toFixed(3)} → ${r.lastLoss.toFixed(3)}, test accuracy ${(r.testAccuracy * 100).toFixed(1)}%`);
  return 0;
}

async function train(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      epochs: { type: 'string' }, batch: { type: 'string' }, hidden: { type: 'string' }, lr: { type: 'string' },
      'weight-decay': { type: 'string' }, seed: { type: 'string' }, 'max-steps': { type: 'string' }, data: { type: 'string' },
      checkpoint: { type: 'string' }, resume: { type: 'boolean' }, backend: { type: 'string' }, precision: { type: 'string' },
    },
  });
  const job = positionals[0];
  if (job !== 'fashion-mlp') throw new KilnError(`kiln train: unknown job '${job ?? ''}' (available: fashion-mlp)`);
  const hidden = (values.hidden ?? '256,128').split(',').map((s) => num(s, 'hidden', 0));
  const r = await runFashionMlp({
    backend: backendByName(values.backend ?? process.env.KILN_BACKEND ?? 'cpu'),
    precision: values.precision === undefined ? undefined : checkPrecision(values.precision, '--precision'),
    epochs: num(values.epochs, 'epochs', 3),
    batch: num(values.batch, 'batch', 128),
    hidden,
    lr: num(values.lr, 'lr', 2e-3),
    weightDecay: num(values['weight-decay'], 'weight-decay', 1e-4),
    seed: num(values.seed, 'seed', 0),
    maxSteps: values['max-steps'] === undefined ? undefined : num(values['max-steps'], 'max-steps', 0),
    dataDir: values.data,
    checkpointDir: values.checkpoint,
    resume: values.resume ?? false,
  });
  console.log(JSON.stringify(r));
  return 0;
}

const PROGRAM_OPTIONS = { train: { type: 'boolean' }, batch: { type: 'string' }, size: { type: 'string' }, precision: { type: 'string' } } as const;

function programFrom(argv: string[], extra: Record<string, { type: 'boolean' | 'string' }> = {}) {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...PROGRAM_OPTIONS, ...extra } });
  const name = positionals[0];
  if (!name) throw new KilnError(`name a program: ${Object.keys(PROGRAMS).join(', ')}`);
  const v = values as Record<string, string | boolean | undefined>;
  const built = buildProgram(name, { train: Boolean(v.train), batch: num(v.batch as string | undefined, 'batch', 8), size: v.size as string | undefined });
  // autocast on the whole program (the training step included), as runtime/compile.ts compileOn does.
  const graph = atPrecision(built, checkPrecision(v.precision ?? 'f32', '--precision'));
  return { graph, values: v };
}

function ir(argv: string[]): number {
  const { graph } = programFrom(argv);
  process.stdout.write(printGraph(graph));
  return 0;
}

function compileCmd(argv: string[]): number {
  const { graph, values } = programFrom(argv, { report: { type: 'boolean' }, stages: { type: 'boolean' }, kernels: { type: 'boolean' } });
  const t0 = performance.now();
  const c = compile(graph);
  const ms = performance.now() - t0;
  if (values.kernels) process.stdout.write(printProgram(c.program));
  if (values.report || values.stages || !values.kernels) process.stdout.write(formatReport(c, { stages: Boolean(values.stages) }));
  console.log(`compiled in ${ms.toFixed(0)} ms`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'demo': return await demo(rest);
      case 'train': return await train(rest);
      case 'ir': return ir(rest);
      case 'compile': return compileCmd(rest);
      case undefined: case 'help': case '--help': case '-h':
        console.log(HELP());
        return cmd === undefined ? 1 : 0;
      default:
        console.error(`kiln: unknown command '${cmd}'\n\n${HELP()}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof KilnError || (e instanceof Error && e.name.endsWith('Error') && e.constructor !== Error && e.constructor !== TypeError)) {
      console.error(`kiln: ${e.name}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
