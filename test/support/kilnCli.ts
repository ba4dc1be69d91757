/**
 * @file Running the `kiln` command as a user does: a child process (node cli/bin.mjs ...), its
 * stdout, stderr and exit code.
 */
import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO, 'cli', 'bin.mjs');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function kiln(args: readonly string[], env: Record<string, string> = {}, timeout = 240_000): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: REPO, encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '', ...env }, timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function spawnKiln(args: readonly string[], o: SpawnOptions = {}) {
  return spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: { ...process.env, KILN_DEBUG: '' }, ...o });
}

/** A stack trace line ("    at fn (file:line:col)"). */
export const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;
