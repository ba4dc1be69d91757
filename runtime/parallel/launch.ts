/**
 * @file `kiln train --gpus N`: start the N ranks of a data-parallel job on this host, as N copies of
 * this command (the same Node, loader flags and arguments, without `--gpus`) with each rank's
 * environment (runtime/parallel/env.ts: KILN_WORLD_SIZE, KILN_RANK, KILN_LOCAL_RANK, and
 * KILN_RENDEZVOUS on a free port of 127.0.0.1). Rank 0 keeps this terminal (its progress bar and log);
 * the other ranks' stderr (warnings, errors) comes through with a `[rank i]` prefix, their stdout is
 * dropped (they log nothing the rank-0 log does not have). The exit code is the first failing rank's;
 * a rank that fails makes the others fail within the job's timeout (the TCP group), and any rank
 * still running `graceMs` after that is killed. SIGINT and SIGTERM are passed on to every rank.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** `args` without `--gpus N` / `--gpus=N`. */
export function withoutGpusFlag(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--gpus') i++;
    else if (!args[i]!.startsWith('--gpus=')) out.push(args[i]!);
  }
  return out;
}

export interface LaunchOptions {
  /** The command to run per rank (default: this process's script and arguments, without --gpus). */
  readonly command?: readonly string[];
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** How long the other ranks get to exit after one failed (ms; default the job's timeout + 15 s). */
  readonly graceMs?: number;
  /** Where the other ranks' stderr lines go (default: this process's stderr). */
  readonly write?: (line: string) => void;
}

/** Start `n` ranks; resolves with the job's exit code once every rank has exited. */
export async function launchRanks(n: number, o: LaunchOptions = {}): Promise<number> {
  const port = await freePort();
  const env = o.env ?? process.env;
  const cmd = o.command ?? [...process.execArgv, process.argv[1]!, ...withoutGpusFlag(process.argv.slice(2))];
  const timeoutS = Number(env.KILN_DIST_TIMEOUT_S) > 0 ? Number(env.KILN_DIST_TIMEOUT_S) : 300;
  const grace = o.graceMs ?? (timeoutS + 15) * 1000;
  const write = o.write ?? ((l: string) => process.stderr.write(l));
  const children: ChildProcess[] = [];
  const exits: Array<Promise<number>> = [];
  let firstFailure: number | undefined;
  let killer: NodeJS.Timeout | undefined;
  for (let r = 0; r < n; r++) {
    const child = spawn(process.execPath, cmd, {
      env: { ...env, KILN_WORLD_SIZE: String(n), KILN_RANK: String(r), KILN_LOCAL_RANK: String(r), KILN_RENDEZVOUS: `127.0.0.1:${port}` },
      stdio: r === 0 ? 'inherit' : ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    if (r > 0) {
      let rest = '';
      child.stderr!.on('data', (b: Buffer) => {
        const lines = (rest + b.toString()).split('\n');
        rest = lines.pop()!;
        for (const l of lines) write(`[rank ${r}] ${l}\n`);
      });
      child.stderr!.on('end', () => rest && write(`[rank ${r}] ${rest}\n`));
    }
    exits.push(new Promise((resolve) => child.on('exit', (code, signal) => {
      const c = code ?? (signal ? 1 : 0);
      if (c !== 0 && firstFailure === undefined) {
        firstFailure = c;
        if (signal) write(`kiln: rank ${r} (pid ${child.pid}) was killed by ${signal}\n`);
        killer = setTimeout(() => {
          for (const k of children) if (k.exitCode === null && k.signalCode === null) {
            write(`kiln: rank ${children.indexOf(k)} (pid ${k.pid}) did not exit ${grace / 1000} s after rank ${r} failed: killing it\n`);
            k.kill('SIGKILL');
          }
        }, grace);
      }
      resolve(c);
    })));
  }
  const forward = (sig: NodeJS.Signals) => () => {
    for (const k of children) if (k.exitCode === null) k.kill(sig);
  };
  const onInt = forward('SIGINT'), onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    await Promise.all(exits);
  } finally {
    if (killer) clearTimeout(killer);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  return firstFailure ?? 0;
}
