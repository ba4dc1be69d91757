"""Write golden/data/inception/: a PyTorch reference of Kiln's Inception-v3 feature extractor
(models/inception/*.ts) and of the FID statistic, read by test/models/inception.test.ts and
test/eval/fid.test.ts.

Run from the repository root:  .venv/bin/python golden/inception_golden.py
(needs torch and safetensors; torchvision, when it imports, is used for the cross-check below).

The reference network is written here with plain torch: torchvision's `Inception3` (models/inception.py)
block for block, with its module names, and every channel count divided by WIDTH (torchvision has no
width parameter; 8 keeps the golden small: ~0.35 M parameters). Two variants, as Kiln's:
  fid          pytorch-fid's fid_inception_v3(): FIDInceptionA/C/E_1 use avg_pool2d(count_include_pad=False),
               FIDInceptionE_2 (Mixed_7c) max_pool2d(3, 1, 1)
  torchvision  torchvision's blocks: avg_pool2d(3, 1, 1) with the padding counted
Features as pytorch-fid's InceptionV3 (output block 3): F.interpolate(x, (299, 299), bilinear,
align_corners=False), 2x - 1, the blocks, adaptive_avg_pool2d(1) -> [B, 2048 / WIDTH].

Cross-check (when torchvision imports): at width 1, this port's state_dict keys and shapes equal
torchvision's Inception3(num_classes=1008, aux_logits=False) minus fc.* and *.num_batches_tracked
(written to keys_full.json, which Kiln's full-size key test reads), and with the same random weights
its 'torchvision' features equal torchvision's (the input of fc) on a 299x299 batch to 1e-5.

Weights are random (seeded): conv N(0, 2/fan_in); batch norm weight 1 + N(0, 0.1^2), bias N(0, 0.1^2),
running_mean N(0, 0.1^2), running_var U(0.5, 1.5).

Files (f32):
  w8.safetensors          the width-8 state_dict with torchvision's keys, plus fc.weight/bias and
                          *.num_batches_tracked (I64), which the loader must ignore
  cases.safetensors       images32 [2, 3, 32, 32] and images80 [2, 3, 80, 80] in [0, 1];
                          fid299 / tv299: features of images32 resized to 299 (fid / torchvision variant);
                          fid80: features of images80 without resizing (fid variant);
                          resize_up: images32 -> (47, 61), resize_down: images80 -> (57, 45) (bilinear);
                          ops.*: the layers alone on ops.x [2, 3, 9, 11]: ops.conv (Conv2d 3->4, kernel (3, 2),
                          stride (2, 1), padding (1, 1), bias; weight ops.conv.weight, ops.conv.bias) and the
                          gradients of sum(conv * ops.r) w.r.t. x, weight, bias (ops.grad.*); ops.maxpool
                          (3, 2, 1), ops.avgpool_excl (3, 2, 1, count_include_pad=False), ops.avgpool_incl
                          (kernel (3, 2), stride 2, padding (1, 0))
  fid_sets.safetensors    real [16, 3, 24, 24], fake [8, 3, 24, 24] in [0, 1]; their fid-variant features at
                          resize 75 (real_features, fake_features) and scalars fd (real[0:8] vs fake),
                          floor (real[0:8] vs real[8:16]) in float64, as pytorch-fid's calculate_frechet_distance
                          defines it (through the eigenvalues of sqrt(S1) S2 sqrt(S1); scipy is not needed)
  keys_full.json          [[key, shape], ...] of the width-1 network (Kiln's parameter names, in order)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "data" / "inception"
WIDTH = 8


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def branch_pool(x, kind):
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=(kind == "avg"))


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features, pool, c):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, c(64), 1)
        self.branch5x5_1 = BasicConv2d(cin, c(48), 1)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, padding=1)
        self.branch_pool = BasicConv2d(cin, c(pool_features), 1)
        self.out = c(64) + c(64) + c(96) + c(pool_features)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(branch_pool(x, self.pool)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, c(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, stride=2)
        self.out = c(384) + c(96) + cin

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7, pool, c):
        super().__init__()
        self.pool = pool
        c7 = c(c7)
        self.branch1x1 = BasicConv2d(cin, c(192), 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, c(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, c(192), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, c(192), 1)
        self.out = 4 * c(192)

    def forward(self, x):
        d = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            d,
            self.branch_pool(branch_pool(x, self.pool)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, c(192), 1)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, c(192), 1)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, stride=2)
        self.out = c(320) + c(192) + cin

    def forward(self, x):
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    def __init__(self, cin, pool, c):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, c(320), 1)
        self.branch3x3_1 = BasicConv2d(cin, c(384), 1)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, c(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, c(192), 1)
        self.out = c(320) + 4 * c(384) + c(192)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(branch_pool(x, self.pool)),
        ], 1)


class InceptionFeatures(nn.Module):
    """torchvision's Inception3 without fc / AuxLogits; forward as pytorch-fid's InceptionV3 (block 3)."""

    def __init__(self, width=1, variant="fid"):
        super().__init__()

        def c(n):
            assert n % width == 0, (n, width)
            return n // width

        avg = "avg_exclude_pad" if variant == "fid" else "avg"
        self.Conv2d_1a_3x3 = BasicConv2d(3, c(32), 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3)
        self.Mixed_5b = InceptionA(c(192), 32, avg, c)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out, 64, avg, c)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out, 64, avg, c)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out, c)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out, 128, avg, c)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out, 160, avg, c)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out, 160, avg, c)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out, 192, avg, c)
        self.Mixed_7a = InceptionD(self.Mixed_6e.out, c)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out, avg, c)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out, "max" if variant == "fid" else "avg", c)
        self.dim = self.Mixed_7c.out

    def trunk(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, images, resize=299):
        x = images
        if resize:
            x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)
        return self.trunk(2 * x - 1)


def randomize(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.num_batches_tracked.fill_(1000)


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """pytorch-fid's statistic in float64: ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)."""
    a, b = f1.double(), f2.double()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T), torch.cov(b.T)  # unbiased (N - 1), as numpy.cov in pytorch-fid
    lam, vec = torch.linalg.eigh(s1)
    root = vec @ torch.diag(lam.clamp(min=0).sqrt()) @ vec.T
    m = root @ s2 @ root
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * tr_sqrt)


def torchvision_cross_check(gen: torch.Generator) -> list | None:
    try:
        import torch.library

        # torchvision's compiled ops may not match this torch build; the model code does not need them.
        register_fake = torch.library.register_fake
        torch.library.register_fake = lambda *a, **k: (lambda f: f)
        try:
            from torchvision.models.inception import Inception3
        finally:
            torch.library.register_fake = register_fake
    except Exception as e:  # noqa: BLE001
        print(f"torchvision not importable ({type(e).__name__}: {e}); skipping the cross-check")
        return None
    tv = Inception3(num_classes=1008, aux_logits=False, init_weights=False).eval()
    ours = InceptionFeatures(1, "torchvision").eval()
    randomize(tv, gen)
    tv_sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    ours_sd = {k: v for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert list(tv_sd) == list(ours_sd), "key names or order differ from torchvision's"
    for k in tv_sd:
        assert tv_sd[k].shape == ours_sd[k].shape, (k, tv_sd[k].shape, ours_sd[k].shape)
    ours.load_state_dict(tv.state_dict(), strict=False)
    x = torch.rand(2, 3, 299, 299, generator=gen)
    feats = {}
    tv.avgpool.register_forward_hook(lambda m, i, o: feats.__setitem__("tv", o.flatten(1)))
    with torch.no_grad():
        tv(2 * x - 1)
        mine = ours(x, resize=None)
    err = (feats["tv"] - mine).abs().max().item()
    scale = feats["tv"].abs().max().item()
    assert err <= 1e-5 * max(1.0, scale), f"features differ from torchvision's by {err} (scale {scale})"
    print(f"torchvision cross-check: {len(tv_sd)} keys match; features max |diff| {err:.2e} (max |f| {scale:.3f})")
    return [[k, list(v.shape)] for k, v in ours_sd.items()]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    keys = torchvision_cross_check(gen)
    if keys is None:
        keys = [[k, list(v.shape)] for k, v in InceptionFeatures(1).state_dict().items() if not k.endswith("num_batches_tracked")]
    (OUT / "keys_full.json").write_text(json.dumps(keys) + "\n")

    fid = InceptionFeatures(WIDTH, "fid").eval()
    randomize(fid, gen)
    tv = InceptionFeatures(WIDTH, "torchvision").eval()
    tv.load_state_dict(fid.state_dict())
    sd = {k: v.contiguous() for k, v in fid.state_dict().items()}
    sd["fc.weight"] = torch.randn(1008 // WIDTH, fid.dim, generator=gen)  # in the file, ignored by the loader
    sd["fc.bias"] = torch.zeros(1008 // WIDTH)
    save_file(sd, str(OUT / f"w{WIDTH}.safetensors"))

    images32 = torch.rand(2, 3, 32, 32, generator=gen)
    images80 = torch.rand(2, 3, 80, 80, generator=gen)
    with torch.no_grad():
        cases = {
            "images32": images32, "images80": images80,
            "fid299": fid(images32), "tv299": tv(images32), "fid80": fid(images80, resize=None),
            "resize_up": F.interpolate(images32, size=(47, 61), mode="bilinear", align_corners=False),
            "resize_down": F.interpolate(images80, size=(57, 45), mode="bilinear", align_corners=False),
        }
    x = torch.randn(2, 3, 9, 11, generator=gen, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, generator=gen, requires_grad=True)
    b = torch.randn(4, generator=gen, requires_grad=True)
    conv = F.conv2d(x, w, b, stride=(2, 1), padding=(1, 1))
    r = torch.randn(conv.shape, generator=gen)
    gx, gw, gb = torch.autograd.grad((conv * r).sum(), [x, w, b])
    with torch.no_grad():
        cases.update({
            "ops.x": x.detach(), "ops.conv.weight": w.detach(), "ops.conv.bias": b.detach(), "ops.r": r, "ops.conv": conv.detach(),
            "ops.grad.x": gx, "ops.grad.weight": gw, "ops.grad.bias": gb,
            "ops.maxpool": F.max_pool2d(x, 3, 2, 1), "ops.avgpool_excl": F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            "ops.avgpool_incl": F.avg_pool2d(x, (3, 2), 2, (1, 0)),
        })
    save_file({k: v.contiguous() for k, v in cases.items()}, str(OUT / "cases.safetensors"))

    real = torch.rand(16, 3, 24, 24, generator=gen)
    fake = (real[:8] * 0.6 + 0.4 * torch.rand(8, 3, 24, 24, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        fr, ff = fid(real, resize=75), fid(fake, resize=75)
    fd, floor = frechet_distance(fr[:8], ff), frechet_distance(fr[:8], fr[8:])
    save_file({
        "real": real, "fake": fake, "real_features": fr, "fake_features": ff,
        "fd": torch.tensor([fd], dtype=torch.float64), "floor": torch.tensor([floor], dtype=torch.float64),
    }, str(OUT / "fid_sets.safetensors"))
    print(f"wrote {OUT}: width {WIDTH} ({sum(v.numel() for v in fid.state_dict().values())} values), "
          f"|fid299| max {cases['fid299'].abs().max():.4f}, fd {fd:.6f}, floor {floor:.6f}")


if __name__ == "__main__":
    main()
