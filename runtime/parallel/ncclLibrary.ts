/**
 * @file Where this machine's libnccl is: the search list backends/cuda/nccl.ts tries, from the
 * environment. KILN_NCCL_LIB (the library file, or its folder) comes first, then CUDA_LIB_DIR, then the
 * `nvidia/nccl/lib` folders of the Python installations PyTorch's wheels put NCCL in (site-packages and
 * dist-packages of /usr, /usr/local, ~/.local, $VIRTUAL_ENV, $CONDA_PREFIX; and, only when none of
 * those exists, the folder `python3` itself reports for the `nvidia.nccl` package), then the dynamic
 * loader's own search (ldconfig's libnccl.so.2).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ncclSearchList } from '../../backends/cuda/nccl.ts';

/** The `nvidia/nccl/lib` folders below the Python library folders of `prefixes` that exist. */
export function pythonNcclDirs(prefixes: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of prefixes) {
    const lib = join(p, 'lib');
    let entries: string[] = [];
    try {
      entries = readdirSync(lib).filter((e) => /^python3(\.\d+)?$/.test(e));
    } catch {
      continue;
    }
    for (const py of entries)
      for (const pk of ['site-packages', 'dist-packages']) {
        const d = join(lib, py, pk, 'nvidia', 'nccl', 'lib');
        if (existsSync(d)) out.push(d);
      }
  }
  return out;
}

/** What `python3` says the nvidia.nccl wheel's library folder is (undefined when it has none). */
function askPython(): string | undefined {
  const r = spawnSync('python3', ['-c', 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))'], { encoding: 'utf8', timeout: 10_000 });
  const d = r.status === 0 ? r.stdout.trim() : '';
  return d && existsSync(d) ? d : undefined;
}

/** The NCCL search list for this environment (see the file comment). */
export function ncclCandidates(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const prefixes = ['/usr/local', '/usr', join(homedir(), '.local'), env.VIRTUAL_ENV, env.CONDA_PREFIX].filter((p): p is string => Boolean(p));
  let pythonDirs = pythonNcclDirs(prefixes);
  if (!pythonDirs.length && !env.KILN_NCCL_LIB) {
    const d = askPython();
    if (d) pythonDirs = [d];
  }
  return ncclSearchList({ file: env.KILN_NCCL_LIB || undefined, libDir: env.CUDA_LIB_DIR || undefined, pythonDirs });
}
