/**
 * The ways a data-parallel job goes wrong, each a clear error and never a hang (runtime/parallel/):
 *  - a bad environment: a world size without a rank or a rendezvous, a rank without a world size, a rank
 *    out of range, a number that is not one (each message names the variable); torchrun's names work;
 *  - a bad rendezvous: ranks started with different world sizes, or two processes with one rank;
 *  - a rank that dies (a real process, SIGKILL): the others fail within a moment, naming its rank and
 *    pid; a rank that hangs with its connection open: the others fail after the timeout, naming it,
 *    and the hung rank hears it too.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parallelEnv } from '../../runtime/parallel/env.ts';
import { freePort, withoutGpusFlag } from '../../runtime/parallel/launch.ts';
import { TcpGroup } from '../../runtime/parallel/tcpGroup.ts';
import { REPO } from '../support/kilnCli.ts';

const RANK_SCRIPT = join(REPO, 'test', 'support', 'parallelRank.ts');

function spawnRank(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', RANK_SCRIPT], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const joined = new Promise<void>((resolve) => child.stdout!.on('data', () => out.includes('joined') && resolve()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return { child, joined, exited, stderr: () => err };
}

describe('data parallelism: failures are clear errors, never hangs', () => {
  it('names the variable of a bad environment', () => {
    expect(parallelEnv({})).toBeUndefined();
    expect(() => parallelEnv({ KILN_WORLD_SIZE: '2', KILN_RENDEZVOUS: 'h:1' })).toThrow(/KILN_WORLD_SIZE=2 is set but KILN_RANK is not/);
    expect(() => parallelEnv({ KILN_RANK: '1' })).toThrow(/KILN_RANK=1 is set but KILN_WORLD_SIZE is not/);
    expect(() => parallelEnv({ KILN_WORLD_SIZE: '2', KILN_RANK: '2', KILN_RENDEZVOUS: 'h:1' })).toThrow(/KILN_RANK=2 is not below KILN_WORLD_SIZE=2/);
    expect(() => parallelEnv({ KILN_WORLD_SIZE: '2', KILN_RANK: '0' })).toThrow(/KILN_RENDEZVOUS is not/);
    expect(() => parallelEnv({ KILN_WORLD_SIZE: 'two', KILN_RANK: '0' })).toThrow(/KILN_WORLD_SIZE=two is not an integer/);
    expect(() => parallelEnv({ KILN_WORLD_SIZE: '2', KILN_RANK: '0', KILN_RENDEZVOUS: 'nohost' })).toThrow(/KILN_RENDEZVOUS 'nohost' is not host:port/);
    expect(parallelEnv({ WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500' })).toMatchObject({ rank: 3, worldSize: 4, localRank: 1, rendezvous: '10.0.0.1:29500' });
    expect(withoutGpusFlag(['train', 'x', '--gpus', '2', '--steps', '3', '--gpus=4'])).toEqual(['train', 'x', '--steps', '3']);
  });

  it('refuses ranks with different world sizes, and one rank twice', async () => {
    let port = await freePort();
    const [a, b] = await Promise.allSettled([
      TcpGroup.open({ rank: 0, worldSize: 2, address: `127.0.0.1:${port}`, timeoutMs: 5000 }),
      TcpGroup.open({ rank: 1, worldSize: 3, address: `127.0.0.1:${port}`, timeoutMs: 5000 }),
    ]);
    expect((a as PromiseRejectedResult).reason.message).toMatch(/world size mismatch: rank 1 \(pid \d+ on .*\) was started with world size 3, rank 0 with 2/);
    expect((b as PromiseRejectedResult).reason.message).toMatch(/refused this rank: world size mismatch/);
    port = await freePort();
    const twice = await Promise.allSettled([0, 1, 1].map((rank) => TcpGroup.open({ rank, worldSize: 3, address: `127.0.0.1:${port}`, timeoutMs: 5000 })));
    expect(twice.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok')).join('\n')).toMatch(/rank 1 joined twice/);
  });

  it('a killed rank makes the others fail at once, naming it; a hung rank makes them fail after the timeout', async () => {
    let port = await freePort();
    const env = { KILN_WORLD_SIZE: '2', KILN_RANK: '1', KILN_RENDEZVOUS: `127.0.0.1:${port}`, KILN_DIST_TIMEOUT_S: '20' };
    const r1 = spawnRank(env);
    const g = await TcpGroup.open({ rank: 0, worldSize: 2, address: `127.0.0.1:${port}`, timeoutMs: 20_000 });
    await r1.joined;
    for (let i = 0; i < 3; i++) await g.allReduce(new Float32Array(2), 'sum');
    const heard: string[] = [];
    g.onFailure((e) => heard.push(e.message));
    const t0 = Date.now();
    r1.child.kill('SIGKILL');
    const err = await g.allReduce(new Float32Array(2), 'sum').then(() => undefined, (e: Error) => e);
    expect(Date.now() - t0).toBeLessThan(5000); // far below the 20 s timeout: the closed connection says it
    expect(err?.message).toMatch(new RegExp(`rank 0 of 2: rank 1 \\(pid ${r1.child.pid} on .*\\) disconnected without leaving the group: the process died or was killed`));
    expect(heard).toHaveLength(1);
    await expect(g.barrier()).rejects.toThrow(/disconnected/); // and every later operation
    await g.close();

    // rank 0 in its own process keeps reducing; rank 1 (this process) hangs: both fail after the timeout
    port = await freePort();
    const r0 = spawnRank({ ...env, KILN_RANK: '0', KILN_RENDEZVOUS: `127.0.0.1:${port}`, KILN_DIST_TIMEOUT_S: '1' });
    const hung = await TcpGroup.open({ rank: 1, worldSize: 2, address: `127.0.0.1:${port}`, timeoutMs: 60_000 });
    const told = new Promise<string>((resolve) => hung.onFailure((e) => resolve(e.message)));
    const t1 = Date.now();
    expect(await r0.exited).toBe(2);
    expect(Date.now() - t1).toBeLessThan(8000);
    expect(r0.stderr()).toMatch(/rank 0 of 2: timed out after 1 s in all-reduce #1 .* waiting for rank 1 \(a rank hung/);
    expect(await told).toMatch(/timed out after 1 s/);
    await hung.close();
  }, 60_000);
});
