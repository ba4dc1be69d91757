"""The baseline a PyTorch user would pick for an image folder (issue 12, bench/dataLoader.sh): torchvision's
ImageFolder (PIL decode) with Grayscale (1 channel) + Resize(S) + CenterCrop(S) + RandomHorizontalFlip + ToTensor
+ Normalize, and torch.utils.data.DataLoader (num_workers, pin_memory, shuffle, drop_last).

  python3 bench/data_torch.py seq DIR N                 per-image cost of that transform in this process
  python3 bench/data_torch.py stream DIR S C B WORKERS STEP_MS...   one epoch per STEP_MS (persistent workers),
                                                        a simulated step of STEP_MS (time.sleep: the main process idle)
  python3 bench/data_torch.py all DIR S C B WORKERS STEPS MIX OUTDIR   (WAIT_FOR=file) all of it in one process:
                                                        stream (STEPS: 0,2), crops of MIX compared with OUTDIR/kiln-crops-C.bin
                                                        (OUTDIR/crops.md), seq (OUTDIR/seq-torch.md); imports torch first
  python3 bench/data_torch.py compare DIR S C KILN TORCH  exact matches of two crops files, by kind of image
  python3 bench/data_torch.py table JSONL               stream lines (both loaders) as markdown table rows
  python3 bench/data_torch.py crops DIR S C OUT         the unflipped u8 crops of every image (sorted by class, then
                                                        name) to OUT, as bench/dataTime.ts crops writes Kiln's

When torchvision is missing the same transforms are written with PIL + numpy (PIL's resize is what
torchvision calls). Prints one JSON line per measurement (stream: the fields of bench/dataTime.ts stream).
"""
import json
import os
import sys
import time

Image = np = torchvision = T = ImageFolder = None


def imports():
    """PIL, numpy and torchvision (when there: else the same pipeline on PIL + numpy); not for `table`."""
    global Image, np, torchvision, T, ImageFolder
    from PIL import Image
    import numpy as np
    try:
        import torchvision
        from torchvision import transforms as T
        from torchvision.datasets import ImageFolder
    except ImportError:
        torchvision = None


def list_images(root):
    out = []
    for c in sorted(os.listdir(root)):
        d = os.path.join(root, c)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.lower().endswith(('.jpg', '.jpeg', '.png', '.webp'))]
    return out


def pil_crop(path, S, C):
    """torchvision's pil_loader + Grayscale + Resize(S) + CenterCrop(S), as a PIL image."""
    with open(path, 'rb') as f:
        img = Image.open(f).convert('RGB')
    if C == 1:
        img = img.convert('L')
    if torchvision is not None:
        return T.CenterCrop(S)(T.Resize(S)(img))
    w, h = img.size
    tw, th = (S, int(S * h / w)) if w <= h else (int(S * w / h), S)
    img = img.resize((tw, th), Image.BILINEAR)
    left, top = int(round((tw - S) / 2.0)), int(round((th - S) / 2.0))
    return img.crop((left, top, left + S, top + S))


def transform(S, C):
    if torchvision is not None:
        return T.Compose(([T.Grayscale(1)] if C == 1 else []) + [T.Resize(S), T.CenterCrop(S), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize([0.5] * C, [0.5] * C)])
    import torch

    def tf(img):
        if C == 1:
            img = img.convert('L')
        w, h = img.size
        tw, th = (S, int(S * h / w)) if w <= h else (int(S * w / h), S)
        img = img.resize((tw, th), Image.BILINEAR)
        left, top = int(round((tw - S) / 2.0)), int(round((th - S) / 2.0))
        a = np.asarray(img.crop((left, top, left + S, top + S)), dtype=np.float32) / 255.0
        if np.random.rand() < 0.5:
            a = a[:, ::-1]
        a = a[None] if C == 1 else a.transpose(2, 0, 1)
        return torch.from_numpy((np.ascontiguousarray(a) - 0.5) / 0.5)
    return tf


class Folder:
    """ImageFolder without torchvision."""

    def __init__(self, root, tf):
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.samples = [(p, classes.index(os.path.basename(os.path.dirname(p)))) for p in list_images(root)]
        self.tf = tf

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        p, y = self.samples[i]
        with open(p, 'rb') as f:
            return self.tf(Image.open(f).convert('RGB')), y


def stream(root, S, C, B, workers, step_list):
    import torch
    from torch.utils.data import DataLoader
    tf = transform(S, C)
    ds = ImageFolder(root, transform=tf) if torchvision is not None else Folder(root, tf)
    dl = DataLoader(ds, batch_size=B, shuffle=True, num_workers=workers, pin_memory=torch.cuda.is_available(), drop_last=True, persistent_workers=workers > 0)
    for step_ms in step_list:
        t0, c0 = time.perf_counter(), time.process_time()
        it = iter(dl)
        waits, steps = [], []
        t_first = t0
        for s in range(len(dl)):
            tw = time.perf_counter()
            x, y = next(it)
            waits.append((time.perf_counter() - tw) * 1e3)
            if s == 0:
                t_first = time.perf_counter()
            ts = time.perf_counter()
            if step_ms > 0:
                time.sleep(step_ms / 1e3)
            steps.append((time.perf_counter() - ts) * 1e3)
        t_end, cpu = time.perf_counter(), time.process_time() - c0
        rest = waits[1:]
        srt = sorted(rest)
        print(json.dumps({
            'loader': 'torch', 'mainCpuMsPerBatch': cpu * 1e3 / len(waits), 'label': os.environ.get('LABEL', ''), 'workers': workers, 'prefetch': workers * 2, 'pin_memory': bool(dl.pin_memory), 'batch': B, 'batches': len(waits),
            'stepMs': sum(steps) / len(steps), 'firstBatchMs': waits[0], 'epochMs': (t_end - t0) * 1e3,
            'imagesPerS': (len(waits) - 1) * B / (t_end - t_first), 'waitMedianMs': srt[len(srt) // 2], 'waitMeanMs': sum(rest) / len(rest),
            'waitMaxMs': srt[-1], 'stepsWaiting': sum(1 for w in rest if w > 1), 'dataShare': sum(rest) / (sum(rest) + sum(steps[1:])),
            'shape': list(x.shape), 'torchvision': getattr(torchvision, '__version__', None), 'pil': Image.__version__}), flush=True)


def compare_rows(root, S, C, kiln, torch_):
    """Markdown rows: per kind of image, how many of Kiln's crops equal torchvision's byte for byte."""
    files, per = list_images(root), C * S * S
    a, b = (np.fromfile(kiln, dtype=np.uint8).astype(np.int32), np.fromfile(torch_, dtype=np.uint8).astype(np.int32))
    groups = {}
    for i, p in enumerate(files):
        w, h = Image.open(p).size
        g = ('JPEG, shorter side >= 3S (libvips shrink-on-load)' if min(w, h) >= 3 * S else 'JPEG') if p.endswith('.jpg') else 'PNG ' + Image.open(p).mode
        d = np.abs(a[i * per:(i + 1) * per] - b[i * per:(i + 1) * per])
        n, exact, mx, diff = groups.get(g, (0, 0, 0, 0))
        groups[g] = (n + 1, exact + int(d.max() == 0), max(mx, int(d.max())), diff + int((d > 0).sum()))
    return ''.join(f'| {C} | {g} | {n} | {exact} | {mx} | {diff / (n * per):.2%} |\n' for g, (n, exact, mx, diff) in groups.items())


def seq_rows(root, n):
    """Markdown rows: per-image wall and CPU time of the PIL transform in this process, one image at a time."""
    files = [p for p in list_images(root) if p.endswith('.jpg')][:n]
    tf = transform(28, 1)
    rows = ''
    for name, op in [('PIL: open + convert RGB + torchvision transform (grey, resize, crop, flip, tensor, normalize)', lambda p: tf(Image.open(p).convert('RGB'))),
                     ('PIL: open + load only', lambda p: Image.open(p).load())]:
        for p in files[:20]:
            op(p)
        c0, t0 = time.process_time(), time.perf_counter()
        for p in files:
            op(p)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        us = cpu / len(files) * 1e6
        rows += f'| {name} | {len(files)} | {wall / len(files) * 1e6:.0f} | {us:.0f} | {1e6 / us:.0f} |\n'
    return rows


def main():
    cmd, root = sys.argv[1], sys.argv[2]
    if cmd != 'table':
        imports()
    if cmd == 'seq':
        print(seq_rows(root, int(sys.argv[3])), end='')
    elif cmd == 'stream':
        S, C, B, W = (int(v) for v in sys.argv[3:7])
        stream(root, S, C, B, W, [float(v) for v in sys.argv[7:]])
    elif cmd == 'crops':
        S, C, out = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        files = list_images(root)
        with open(out, 'wb') as f:
            for p in files:
                a = np.asarray(pil_crop(p, S, C), dtype=np.uint8)
                f.write((a if C == 1 else a.transpose(2, 0, 1)).tobytes())
        print(f'{len(files)} crops to {out} (torchvision {getattr(torchvision, "__version__", None)}, PIL {Image.__version__})', file=sys.stderr)
    elif cmd == 'table':  # JSON lines of `stream` (both loaders) to markdown rows; root = the file
        for line in open(root):
            if not line.startswith('{'):
                continue
            r = json.loads(line)
            who = (f"Kiln, {r['workers']} worker processes x{r['inFlight']}, prefetch {r['prefetch']} batches; decoded by WebAssembly mozjpeg / sharp: {r['decodedBy']['wasm']} / {r['decodedBy']['sharp']}" + (f" (crop cache; {r['decoded']} decoded)" if r.get('cacheFile') else '') if r['loader'] == 'kiln'
                   else f"PyTorch DataLoader, {r['workers']} workers, prefetch {r['prefetch']} batches, pin_memory {r['pin_memory']}")
            print(f"| {r.get('label', '')} | {who} | {r['stepMs']:.2f} | {r['batches']} | {r['firstBatchMs']:.0f} | **{r['imagesPerS']:,.0f}** | {r.get('mainCpuMsPerBatch', float('nan')):.2f} | "
                  f"{r['waitMedianMs']:.3f} | {r['waitMeanMs']:.3f} | {r['waitMaxMs']:.1f} | {r['stepsWaiting']} | {r['dataShare']:.1%} |")
    elif cmd == 'all':  # one import of torch (slow on the GPU machine): wait for WAIT_FOR, stream, crops + compare, seq
        S, C, B, W = (int(v) for v in sys.argv[3:7])
        steps, mix, out = [float(v) for v in sys.argv[7].split(',')], sys.argv[8], sys.argv[9]
        import torch  # noqa: F401  (the import before the wait)
        while not os.path.exists(os.environ['WAIT_FOR']):
            time.sleep(0.05)
        stream(root, S, C, B, W, steps)
        with open(os.path.join(out, 'crops.md'), 'w') as f:
            for c in (1, 3):
                files, per = list_images(mix), c * S * S
                mine = np.concatenate([(lambda a: a if c == 1 else a.transpose(2, 0, 1))(np.asarray(pil_crop(p, S, c), dtype=np.uint8)).reshape(-1) for p in files])
                mine.tofile(os.path.join(out, f'torch-crops-{c}.bin'))
                f.write(compare_rows(mix, S, c, os.path.join(out, f'kiln-crops-{c}.bin'), os.path.join(out, f'torch-crops-{c}.bin')))
        with open(os.path.join(out, 'seq-torch.md'), 'w') as f:
            f.write(seq_rows(root, 300))
    elif cmd == 'compare':
        print(compare_rows(root, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]), end='')
    else:
        sys.exit('usage: data_torch.py seq|stream|crops|compare ...')


if __name__ == '__main__':
    main()
