/**
 * NCCL's binding without a GPU (backends/cuda/nccl.ts, runtime/parallel/ncclLibrary.ts): the search
 * list (KILN_NCCL_LIB's file or folder first, then CUDA_LIB_DIR, the PyTorch wheel's folders, the
 * loader's own search), the error that lists every path tried and says what to set, and NCCL failures
 * worded with the call, the rank and NCCL's message (a fake NCCL).
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NcclComm, type NcclApi, loadNccl, ncclSearchList } from '../../backends/cuda/nccl.ts';
import { ncclCandidates, pythonNcclDirs } from '../../runtime/parallel/ncclLibrary.ts';
import { pinLocalGpu } from '../../runtime/parallel/env.ts';

describe('NCCL binding', () => {
  it('searches the given file or folder, CUDA_LIB_DIR, the wheel folders, then the loader', () => {
    expect(ncclSearchList({ file: '/opt/nccl/lib/libnccl.so.2', libDir: '/cuda/lib', pythonDirs: ['/py/nvidia/nccl/lib'] })).toEqual([
      '/opt/nccl/lib/libnccl.so.2', '/cuda/lib/libnccl.so.2', '/cuda/lib/libnccl.so', '/py/nvidia/nccl/lib/libnccl.so.2', '/py/nvidia/nccl/lib/libnccl.so', 'libnccl.so.2', 'libnccl.so',
    ]);
    expect(ncclSearchList({ file: '/opt/nccl/lib' }).slice(0, 2)).toEqual(['/opt/nccl/lib/libnccl.so.2', '/opt/nccl/lib/libnccl.so']);
    const root = mkdtempSync(join(tmpdir(), 'kiln-py-'));
    const d = join(root, 'lib', 'python3.12', 'site-packages', 'nvidia', 'nccl', 'lib');
    mkdirSync(d, { recursive: true });
    expect(pythonNcclDirs([root, join(root, 'none')])).toEqual([d]);
    expect(ncclCandidates({ KILN_NCCL_LIB: '/x/libnccl.so.2', CUDA_LIB_DIR: '/c', VIRTUAL_ENV: root })).toEqual(expect.arrayContaining(['/x/libnccl.so.2', '/c/libnccl.so.2', join(d, 'libnccl.so.2')]));
    expect(ncclCandidates({ KILN_NCCL_LIB: '/x/libnccl.so.2' })[0]).toBe('/x/libnccl.so.2');
  });

  it('a missing library lists what was tried and what to set', () => {
    expect(() => loadNccl(['/nonexistent/libnccl.so.2'])).toThrow(/cannot load NCCL \(libnccl\.so\.2\), which multi-GPU training needs; tried: \/nonexistent\/libnccl\.so\.2 \(.*\)\. .*set KILN_NCCL_LIB/);
  });

  it('NCCL failures name the call, the rank and NCCL\'s message', () => {
    const api: NcclApi = {
      commInitRank: (c) => (((c as unknown[])[0] = { comm: 1 }), 0),
      allReduce: () => 6, groupStart: () => 0, groupEnd: () => 0, commAbort: () => 0,
      errorString: (rc) => (rc === 6 ? 'remote process exited or there was a network error' : 'x'), lastError: () => 'peer 1 closed the connection',
    };
    const comm = NcclComm.init(api, new Uint8Array(128), 2, 0);
    expect(() => comm.allReduce(1n, 1n, 4, 'f32', 'mean', null)).toThrow('ncclAllReduce(4 f32) failed on rank 0 of 2: remote process exited or there was a network error (ncclResult 6) (peer 1 closed the connection)');
    expect(() => comm.allReduce(1n, 1n, 4, 'bool', 'mean', null)).toThrow(/Kiln does not reduce bool/);
    expect(() => NcclComm.init(api, new Uint8Array(64), 2, 0)).toThrow(/unique id of 64 bytes \(expected 128\)/);
    comm.abort();
    expect(() => comm.allReduce(1n, 1n, 4, 'f32', 'mean', null)).toThrow(/communicator of rank 0 was aborted/);
  });

  it('each rank sees only its GPU', () => {
    const p = { rank: 1, worldSize: 2, localRank: 1, rendezvous: 'h:1', timeoutMs: 1, checkEvery: 0 };
    const env: Record<string, string | undefined> = {};
    pinLocalGpu(p, env);
    expect(env.CUDA_VISIBLE_DEVICES).toBe('1');
    const listed: Record<string, string | undefined> = { CUDA_VISIBLE_DEVICES: '4,5,6' };
    pinLocalGpu(p, listed);
    expect(listed.CUDA_VISIBLE_DEVICES).toBe('5');
    expect(() => pinLocalGpu({ ...p, localRank: 3 }, { CUDA_VISIBLE_DEVICES: '4,5' })).toThrow(/KILN_LOCAL_RANK=3 but CUDA_VISIBLE_DEVICES=4,5 lists 2 GPU/);
  });
});
