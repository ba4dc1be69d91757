"""The GPU turn-taking protocol of the bench scripts (bench/lightningdit.sh, bench/torch_baseline.py,
bench/tarflow_sample_torch.py): KILN_GPU_READY=FILE is touched when the process is ready to time; with
KILN_GPU_AFTER=FILE it waits for that file; KILN_GPU_LOCK=DIR is then taken (an atomic mkdir, as
bench/trainStep.ts does) so that no two timed parts overlap. `acquire()` returns the release function."""
import os
import time
from pathlib import Path


def acquire():
    lock, after, ready = os.environ.get("KILN_GPU_LOCK"), os.environ.get("KILN_GPU_AFTER"), os.environ.get("KILN_GPU_READY")
    if ready:
        Path(ready).touch()
    while lock and after and not os.path.exists(after):
        time.sleep(0.05)
    while lock:
        try:
            os.mkdir(lock)
            break
        except FileExistsError:
            time.sleep(0.05)

    def release():
        if lock and os.path.isdir(lock):
            os.rmdir(lock)
    return release
