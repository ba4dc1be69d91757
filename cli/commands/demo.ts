/**
 * @file `kiln demo`: trace a small MLP, print its Graph IR, run it on the CPU backend, build its training
 * step, compile it to kernels (checked against the reference), and train it on Fashion-MNIST.
 */
import type { Command } from 'commander';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { compile } from '../../compiler/compile.ts';
import { crossEntropy, trace } from '../../compiler/dsl/index.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { printGraph } from '../../ir/printer.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { verify } from '../../ir/verify.ts';
import { MlpClassifier } from '../../models/mlp.ts';
import { runFashionMlp } from '../jobs/fashionMlp.ts';
import { int } from '../options.ts';

async function demo(steps: number): Promise<void> {
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
  if (steps === 0) return;
  console.log(`5. train on Fashion-MNIST for ${steps} steps on the CPU backend`);
  const r = await runFashionMlp({ backend: cpuBackend, epochs: 1, batch: 64, hidden: [64], lr: 3e-3, weightDecay: 1e-4, seed: 0, maxSteps: steps, logEvery: 50 });
  console.log(`done: loss ${r.firstLoss.toFixed(3)} → ${r.lastLoss.toFixed(3)}, test accuracy ${(r.testAccuracy * 100).toFixed(1)}%`);
}

export function register(program: Command): void {
  program.command('demo')
    .description('trace an MLP, print its IR, run it, compile it to kernels, and train it on Fashion-MNIST')
    .option('--steps <n>', 'training steps at the end (0: skip training)', int, 300)
    .action(async (o: { steps: number }) => demo(o.steps));
}
