/**
 * @file One rank of a TCP group as its own process, for the failure tests of
 * test/runtime/parallelFailure.test.ts: joins the group from the environment (runtime/parallel/env.ts),
 * prints "joined", then all-reduces a small array every 20 ms until the group fails (then prints the
 * error on stderr and exits 2) or PARALLEL_RANK_ROUNDS rounds are done (exit 0). PARALLEL_RANK_HANG=1:
 * after joining, do nothing (a rank that hangs with its connection open).
 */
import { parallelEnv } from '../../runtime/parallel/env.ts';
import { TcpGroup } from '../../runtime/parallel/tcpGroup.ts';

const p = parallelEnv()!;
const g = await TcpGroup.open({ rank: p.rank, worldSize: p.worldSize, address: p.rendezvous, timeoutMs: p.timeoutMs });
console.log('joined');
if (process.env.PARALLEL_RANK_HANG) setInterval(() => {}, 1000);
else {
  const rounds = Number(process.env.PARALLEL_RANK_ROUNDS ?? 1e9);
  try {
    for (let i = 0; i < rounds; i++) {
      await g.allReduce(new Float32Array([p.rank, i]), 'sum');
      await new Promise((r) => setTimeout(r, 20));
    }
    await g.close();
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
}
