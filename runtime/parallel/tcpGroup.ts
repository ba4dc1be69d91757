/**
 * @file The ranks of a data-parallel job over TCP: the rendezvous (rank 0 listens on the job's address,
 * every other rank connects to it and says its rank, world size, pid and host; a wrong world size, a
 * rank out of range or twice is an error on both sides), a small key-less bootstrap channel (rank 0's
 * NCCL unique id reaches every rank through `broadcastBytes`; on several hosts the same code, with the
 * address of rank 0's host), and the Collective of host buffers that tests and the CPU backend use:
 * a star through rank 0, which sums the ranks' Float32Arrays in rank order (rank 0, 1, 2, ...: the same
 * bits whatever the arrival order) and sends the result back.
 *
 * Failure: a rank whose connection closes without saying goodbye died (killed, crashed): rank 0 tells
 * every other rank, and each fails its pending and later operations with an error naming the rank,
 * its pid and host. An operation that waits longer than `timeoutMs` for a rank fails the same way on
 * every rank (a rank that hangs). `onFailure` hears the error even when no operation is pending, so a
 * rank stuck in a device collective (NCCL waits forever for a dead peer) can abort and exit.
 *
 * Wire format: frames of [u32 payload bytes][u8 kind][u32 sequence number][u32 sender rank][payload].
 */
import { type Server, type Socket, connect, createServer } from 'node:net';
import { hostname } from 'node:os';
import type { Collective, ReduceOp } from '../../backends/collective.ts';
import { KilnError } from '../../ir/errors.ts';

/** A data-parallel job failed: a rank died, hung, left early, or the ranks disagree. */
export class ParallelError extends KilnError {
  override name = 'ParallelError';
}

export interface TcpGroupOptions {
  readonly rank: number;
  readonly worldSize: number;
  /** host:port of rank 0 (it listens there; port 0 on rank 0: any free port, see `address`). */
  readonly address: string;
  /** How long an operation waits for the other ranks (ms; default 300 s). */
  readonly timeoutMs?: number;
  /** How long the rendezvous waits for every rank to join (ms; default timeoutMs). */
  readonly joinTimeoutMs?: number;
}

const HELLO = 1, WELCOME = 2, ERROR = 3, DATA = 4, ABORT = 5, BYE = 6;
const HEADER = 13;

interface Peer {
  socket: Socket;
  rank: number;
  pid: number;
  host: string;
  left: boolean;
}

interface Waiter {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

function frame(kind: number, seq: number, from: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeUInt32LE(payload.byteLength, 0);
  h.writeUInt8(kind, 4);
  h.writeUInt32LE(seq, 5);
  h.writeUInt32LE(from, 9);
  return Buffer.concat([h, payload]);
}

/** Split a socket's byte stream into frames. */
function onFrames(socket: Socket, handle: (kind: number, seq: number, from: number, payload: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= HEADER) {
      const n = pending.readUInt32LE(0);
      if (pending.length < HEADER + n) break;
      const payload = Buffer.from(pending.subarray(HEADER, HEADER + n));
      handle(pending.readUInt8(4), pending.readUInt32LE(5), pending.readUInt32LE(9), payload);
      pending = pending.subarray(HEADER + n);
    }
  });
}

const json = (o: unknown) => Buffer.from(JSON.stringify(o));

/** host:port → its parts (a clear error for anything else). */
export function parseAddress(address: string, what = 'rendezvous address'): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) throw new ParallelError(`${what} '${address}' is not host:port (e.g. 10.0.0.1:29500)`);
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
}

export class TcpGroup implements Collective<Float32Array> {
  readonly transport = 'tcp';
  private seq = 0;
  private failure: Error | undefined;
  private closing = false;
  private readonly listeners: Array<(e: Error) => void> = [];
  private readonly inbox = new Map<string, Buffer>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly peers: Peer[] = [];
  private hub: Socket | undefined;
  private server: Server | undefined;
  /** The address rank 0 listens on (its port when it was 0). */
  address = '';
  /** How long an operation (and, in runtime/parallel/session.ts, a step) may wait for the other ranks. */
  readonly timeoutMs: number;

  private constructor(readonly rank: number, readonly worldSize: number, timeoutMs: number) {
    this.timeoutMs = timeoutMs;
  }

  /** Join the group (rank 0 listens, the others connect); resolves once every rank has joined. */
  static async open(o: TcpGroupOptions): Promise<TcpGroup> {
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw new ParallelError(`world size ${o.worldSize} is not a positive integer`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new ParallelError(`rank ${o.rank} is not in 0..${o.worldSize - 1} (world size ${o.worldSize})`);
    const g = new TcpGroup(o.rank, o.worldSize, o.timeoutMs ?? 300_000);
    const { host, port } = parseAddress(o.address);
    const join = o.joinTimeoutMs ?? g.timeoutMs;
    if (o.rank === 0) await g.listen(host, port, join);
    else await g.connectHub(host, port, join);
    return g;
  }

  private get label(): string {
    return `rank ${this.rank} of ${this.worldSize}`;
  }

  private listen(host: string, port: number, joinMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = (this.server = createServer());
      let joined = 0, settled = false;
      const done = (e?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (e) {
          for (const p of this.peers) p.socket.destroy();
          server.close();
          reject(e);
        } else resolve();
      };
      const timer = setTimeout(() => {
        const have = new Set(this.peers.map((p) => p.rank));
        const missing = [...Array(this.worldSize).keys()].filter((r) => r > 0 && !have.has(r));
        done(new ParallelError(`rendezvous at ${this.address}: rank(s) ${missing.join(', ')} of ${this.worldSize} did not join within ${joinMs / 1000} s (not started, a wrong KILN_RENDEZVOUS, or a firewall)`));
      }, joinMs);
      if (this.worldSize === 1) {
        this.address = `${host}:${port}`;
        done();
        return;
      }
      server.on('error', (e) => done(new ParallelError(`rank 0 cannot listen on ${host}:${port} for the rendezvous: ${e.message}`)));
      server.on('connection', (socket) => {
        socket.setNoDelay(true);
        let peer: Peer | undefined;
        onFrames(socket, (kind, seq, from, payload) => {
          if (!peer) {
            if (kind !== HELLO) return socket.destroy();
            const h = JSON.parse(payload.toString()) as { rank: number; worldSize: number; pid: number; host: string };
            const refuse = (msg: string) => {
              socket.end(frame(ERROR, 0, 0, json({ message: msg })));
              done(new ParallelError(msg));
            };
            if (h.worldSize !== this.worldSize) return refuse(`world size mismatch: rank ${h.rank} (pid ${h.pid} on ${h.host}) was started with world size ${h.worldSize}, rank 0 with ${this.worldSize}`);
            if (h.rank < 1 || h.rank >= this.worldSize) return refuse(`rank ${h.rank} (pid ${h.pid} on ${h.host}) is not in 1..${this.worldSize - 1} (world size ${this.worldSize}; rank 0 is the rendezvous)`);
            if (this.peers.some((p) => p.rank === h.rank)) return refuse(`rank ${h.rank} joined twice (pid ${h.pid} on ${h.host}): every process needs its own KILN_RANK`);
            peer = { socket, rank: h.rank, pid: h.pid, host: h.host, left: false };
            this.peers.push(peer);
            if (++joined === this.worldSize - 1) {
              for (const p of this.peers) p.socket.write(frame(WELCOME, 0, 0));
              done();
            }
            return;
          }
          this.receive(kind, seq, from, payload);
        });
        const lost = () => {
          if (!peer || peer.left || this.closing) return;
          peer.left = true;
          this.fail(new ParallelError(`${this.label}: rank ${peer.rank} (pid ${peer.pid} on ${peer.host}) disconnected without leaving the group: the process died or was killed`));
        };
        socket.on('close', lost);
        socket.on('error', lost);
      });
      server.listen(port, host, () => {
        const a = server.address();
        this.address = typeof a === 'object' && a ? `${host}:${a.port}` : `${host}:${port}`;
      });
    });
  }

  private connectHub(host: string, port: number, joinMs: number): Promise<void> {
    const deadline = Date.now() + joinMs;
    this.address = `${host}:${port}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (e?: Error) => {
        if (settled) return;
        settled = true;
        if (e) {
          this.hub?.destroy();
          reject(e);
        } else resolve();
      };
      const attempt = () => {
        const s = connect({ host, port });
        s.setNoDelay(true);
        let welcomed = false;
        s.once('connect', () => {
          this.hub = s;
          s.write(frame(HELLO, 0, this.rank, json({ rank: this.rank, worldSize: this.worldSize, pid: process.pid, host: hostname() })));
        });
        onFrames(s, (kind, seq, from, payload) => {
          if (kind === WELCOME) {
            welcomed = true;
            return done();
          }
          if (kind === ERROR) return done(new ParallelError(`${this.label}: the rendezvous at ${host}:${port} refused this rank: ${(JSON.parse(payload.toString()) as { message: string }).message}`));
          this.receive(kind, seq, from, payload);
        });
        s.on('error', (e: NodeJS.ErrnoException) => {
          if (!welcomed && this.hub !== s && (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' || e.code === 'EAI_AGAIN')) {
            if (Date.now() > deadline) done(new ParallelError(`${this.label}: no rendezvous at ${host}:${port} within ${joinMs / 1000} s (is rank 0 running, and KILN_RENDEZVOUS its address?)`));
            else setTimeout(attempt, 100);
          }
        });
        s.on('close', () => {
          if (this.hub !== s) return;
          if (!welcomed) return done(new ParallelError(`${this.label}: the rendezvous at ${host}:${port} closed the connection before every rank joined`));
          if (!this.closing) this.fail(new ParallelError(`${this.label}: lost the connection to rank 0 at ${host}:${port}: rank 0 died or was killed`));
        });
      };
      setTimeout(() => done(new ParallelError(`${this.label}: the rendezvous at ${host}:${port} did not complete within ${joinMs / 1000} s (every rank must start with the same world size)`)), joinMs).unref();
      attempt();
    });
  }

  private receive(kind: number, seq: number, from: number, payload: Buffer): void {
    if (kind === ABORT) {
      const msg = (JSON.parse(payload.toString()) as { message: string }).message;
      return this.fail(new ParallelError(msg), from);
    }
    if (kind === BYE) {
      const p = this.peers.find((q) => q.rank === from);
      if (p) p.left = true;
      else if (from === 0) this.closing = true; // rank 0 is done: its closing socket is no failure
      return;
    }
    if (kind !== DATA) return;
    const key = `${from}:${seq}`;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      w.resolve(payload);
    } else this.inbox.set(key, payload);
  }

  /** End the group with `e` on this rank, and tell the others (rank 0 relays to every rank). */
  private fail(e: Error, from?: number): void {
    if (this.failure) return;
    this.failure = e;
    const abort = frame(ABORT, 0, this.rank, json({ message: e.message }));
    if (this.rank === 0) for (const p of this.peers) if (!p.left && p.rank !== from) p.socket.write(abort);
    if (this.rank !== 0 && from === undefined && this.hub && !this.hub.destroyed) this.hub.write(abort);
    for (const w of this.waiters.values()) w.reject(e);
    this.waiters.clear();
    for (const l of this.listeners.splice(0)) l(e);
  }

  onFailure(listener: (e: Error) => void): void {
    if (this.failure) listener(this.failure);
    else this.listeners.push(listener);
  }

  /** The failure that ended the group, if any. */
  get failed(): Error | undefined {
    return this.failure;
  }

  private wait(from: number, seq: number, op: string): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const key = `${from}:${seq}`;
    const got = this.inbox.get(key);
    if (got) {
      this.inbox.delete(key);
      return Promise.resolve(got);
    }
    const peer = this.peers.find((p) => p.rank === from);
    if (peer?.left) return Promise.reject(new ParallelError(`${this.label}: ${op} needs rank ${from}, which has left the group`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new ParallelError(`${this.label}: timed out after ${this.timeoutMs / 1000} s in ${op} waiting for rank ${from} (a rank hung, or is far behind the others)`));
      }, this.timeoutMs);
      this.waiters.set(key, {
        resolve: (b) => (clearTimeout(timer), resolve(b)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  private send(socket: Socket | undefined, seq: number, payload: Uint8Array): void {
    if (this.failure) throw this.failure;
    socket!.write(frame(DATA, seq, this.rank, payload));
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.closing && this.rank !== 0) throw new ParallelError(`${this.label}: the group is closed`);
  }

  async allReduce(buf: Float32Array, op: ReduceOp): Promise<void> {
    this.check();
    const seq = ++this.seq;
    const what = `all-reduce #${seq} (${buf.length} values)`;
    if (this.worldSize === 1) {
      return;
    }
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (this.rank !== 0) {
      this.send(this.hub, seq, bytes);
      const r = await this.wait(0, seq, what);
      if (r.byteLength !== buf.byteLength) throw new ParallelError(`${this.label}: ${what}: rank 0 reduced ${r.byteLength / 4} values, this rank has ${buf.length} (the ranks run different programs)`);
      bytes.set(r);
      return;
    }
    const acc = Float32Array.from(buf);
    for (let r = 1; r < this.worldSize; r++) {
      const b = await this.wait(r, seq, what);
      if (b.byteLength !== buf.byteLength) this.fail(new ParallelError(`${what}: rank ${r} sent ${b.byteLength / 4} values, rank 0 has ${buf.length} (the ranks run different programs)`));
      this.check();
      const x = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + x[i]!;
    }
    if (op === 'mean') for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! / this.worldSize;
    const out = new Uint8Array(acc.buffer);
    for (const p of this.peers) this.send(p.socket, seq, out);
    buf.set(acc);
  }

  /** buf = root's bytes on every rank (the NCCL unique id's way to every rank). */
  async broadcastBytes(buf: Uint8Array, root: number): Promise<void> {
    this.check();
    if (root < 0 || root >= this.worldSize) throw new ParallelError(`broadcast from rank ${root}: not in 0..${this.worldSize - 1}`);
    const seq = ++this.seq;
    const what = `broadcast #${seq} from rank ${root}`;
    if (this.worldSize === 1) return;
    if (this.rank === 0) {
      if (root !== 0) buf.set(await this.wait(root, seq, what));
      for (const p of this.peers) if (p.rank !== root) this.send(p.socket, seq, buf);
      return;
    }
    if (this.rank === root) {
      this.send(this.hub, seq, buf);
      return;
    }
    const r = await this.wait(0, seq, what);
    if (r.byteLength !== buf.byteLength) throw new ParallelError(`${this.label}: ${what}: ${r.byteLength} bytes, this rank expected ${buf.byteLength}`);
    buf.set(r);
  }

  broadcast(buf: Float32Array, root: number): Promise<void> {
    return this.broadcastBytes(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), root);
  }

  barrier(): Promise<void> {
    return this.allReduce(new Float32Array(0), 'sum');
  }

  /** Fail the group on purpose (every rank hears `message`): a rank's watchdog, or its fatal error. */
  abort(message: string): void {
    this.fail(new ParallelError(message));
  }

  async close(): Promise<void> {
    if (this.closing && this.rank !== 0 && !this.hub) return;
    this.closing = true;
    for (const w of this.waiters.values()) w.reject(new ParallelError(`${this.label}: the group was closed`));
    this.waiters.clear();
    const sockets = this.rank === 0 ? this.peers.map((p) => p.socket) : this.hub ? [this.hub] : [];
    if (this.failure) {
      // a failed group: nobody is listening for a goodbye
      for (const s of sockets) s.destroy();
      this.server?.close();
      return;
    }
    const bye = frame(BYE, 0, this.rank);
    const closed = Promise.all(sockets.map((s) => new Promise<void>((r) => (s.destroyed ? r() : (s.once('close', () => r()), s.end(bye))))));
    const late = new Promise<void>((r) => setTimeout(r, 5000).unref());
    await Promise.race([closed, late]);
    for (const s of sockets) s.destroy();
    this.server?.close();
  }
}
