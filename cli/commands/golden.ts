/**
 * @file `kiln golden check [NAME]` runs the stored goldens on a backend and prints each output's max
 * error against its tolerance (exit 1 on any failure); `kiln golden update` regenerates them with the
 * PyTorch references (golden/*.py) when python3 with torch is there, else says how to install it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { GOLDEN_SCRIPTS } from '../../golden/scripts.ts';
import { KilnError } from '../../ir/errors.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { JOBS_DIR } from '../jobs/load.ts';
import { backendOption } from '../options.ts';

const ROOT = join(JOBS_DIR, '..');
const INSTALL = 'python3 -m venv .venv && .venv/bin/pip install torch==2.13.0+cpu transformers==5.17.0 safetensors, then: kiln golden update --python .venv/bin/python';

export function register(program: Command): void {
  const golden = program.command('golden').description('golden-output regression checks against the PyTorch references');
  golden.command('check')
    .description('run every stored golden (or those whose name contains NAME) and compare each output with its tolerance')
    .argument('[name]', 'only goldens whose name contains this (e.g. nn/linear, attention)')
    .addOption(backendOption('cpu'))
    .option('--list', 'list the goldens and exit', false)
    .option('--dir <folder>', 'read the goldens from this copy of golden/data (default: the repository\'s golden/data)')
    .action(async (name: string | undefined, o: { backend: string; list: boolean; dir?: string }) => {
      if (o.dir && !existsSync(o.dir)) throw new KilnError(`--dir: ${o.dir}: no such folder`);
      // loaded on demand: golden/nnCases.ts lists golden/data/nn when imported, and every other command must start without golden/data
      const { goldenChecks } = await import('../../golden/checks.ts');
      const checks = goldenChecks(o.dir ? resolve(o.dir) : undefined).filter((c) => !name || c.name.includes(name));
      if (!checks.length) throw new KilnError(`no golden matches '${name}' (see kiln golden check --list)`);
      if (o.list) return void console.log(checks.map((c) => `${c.name}  (${c.file})`).join('\n'));
      const { backend, reason } = await chooseBackend(o.backend);
      console.log(`backend: ${backend.name} (${reason})`);
      let failed = 0, outputs = 0;
      const failures: string[] = [];
      for (const c of checks) {
        let rows;
        try {
          rows = await c.run(backend);
        } catch (e) {
          failed++;
          console.log(`FAIL ${c.name} (${c.file}): ${(e as Error).message.split('\n')[0]}`);
          continue;
        }
        const bad = rows.filter((r) => !r.ok);
        if (bad.length) failed++, failures.push(`${c.file}: ${bad.map((r) => r.output).join(', ')}`);
        outputs += rows.length;
        for (const r of rows)
          console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${c.name} ${r.output}: max err ${r.maxErr.toExponential(2)} (tolerance ${r.bound.toExponential(2)})${r.ok ? '' : ` in ${c.file}`}`);
      }
      console.log(`${checks.length - failed} of ${checks.length} goldens pass (${outputs} outputs) on ${backend.name}`);
      for (const f of failures) console.log(`failed: ${f}`);
      if (failed) process.exitCode = 1;
    });
  golden.command('update')
    .description('regenerate the goldens from the PyTorch references golden/*.py (needs python3 with torch, transformers, safetensors)')
    .argument('[script]', `only this reference (${GOLDEN_SCRIPTS.join(', ')})`)
    .option('--python <exe>', 'the Python interpreter to use', 'python3')
    .action((script: string | undefined, o: { python: string }) => {
      const scripts = script ? [script] : [...GOLDEN_SCRIPTS];
      for (const s of scripts) if (!(GOLDEN_SCRIPTS as readonly string[]).includes(s)) throw new KilnError(`unknown golden script '${s}' (${GOLDEN_SCRIPTS.join(', ')})`);
      const probe = spawnSync(o.python, ['-c', 'import torch, safetensors; print(torch.__version__)'], { encoding: 'utf8' });
      if (probe.error || probe.status !== 0)
        throw new KilnError(`${o.python} with torch and safetensors is needed to regenerate goldens (${probe.error ? 'no such interpreter' : 'import torch failed'}); install them: ${INSTALL}`);
      console.log(`torch ${probe.stdout.trim()} (${o.python})`);
      for (const s of scripts) {
        console.log(`python golden/${s}.py`);
        const r = spawnSync(o.python, [join(ROOT, 'golden', `${s}.py`)], { stdio: 'inherit', cwd: ROOT });
        if (r.status !== 0) throw new Error(`golden/${s}.py failed (exit ${r.status})`);
      }
      console.log('goldens regenerated: review `git diff golden/data`, then run `kiln golden check` and `npm test`');
    });
}
