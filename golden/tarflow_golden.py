"""Write golden/data/tarflow/<config>.safetensors: tiny PyTorch references of TarFlow / STARFlow for
test/models/tarflow.test.ts (models/tarflow.ts).

Run from the repository root:  .venv/bin/python golden/tarflow_golden.py

The model below is written from the reference code (not imported):
- apple/ml-tarflow @ 313120e transformer_flow.py: Attention (pre-LN `norm` inside the attention
  module, `qkv` with bias, scale head_dim^-1/2, reshape (B, T, 3H, hd) → q, k, v), MLP (`norm`,
  `main` = Linear → exact GELU → Linear), AttentionBlock (`attention`, `mlp`), MetaBlock (`proj_in`,
  `pos_embed` [T, C], `class_embed` [classes, 1, C] whose mean is the unconditional / dropped-label
  embedding (label −1), causal layers, zero-init `proj_out`, outputs shifted right one token, split
  (α, μ) = chunk(2) in that order, z = (x − μ)·exp(−α), logdet = −mean(α) over tokens and channels),
  Model (unfold patchify: features ordered (c, ki, kj); blocks alternate identity / flip;
  loss = 0.5·mean(z²) − mean(Σ_blocks logdet)); sampling MetaBlock.reverse with a KV cache and
  guidance α ← α + w(α − α_u), μ ← μ + w(μ − μ_u) (unconditional pass = mean class embedding);
  evaluate_bpd.py (bpd of 8-bit images in [−1, 1]: (−log N(z)/D − logdet + log 128) / ln 2);
  sample.ipynb denoising x ← x − (B·D·σ²)·∇_x loss (= x + σ²·∇ log p(x)).
- apple/ml-starflow @ e565a46 transformer_flow.py options: `use_softplus` (σ = softplus(a + 0.5413),
  z = (x − μ)/σ, logdet = −log σ), `soft_clip` (c·tanh(out/c) on proj_out's output), `use_sos`
  (learned `sos_embed` [1, 1, in]: inputs are [sos, x_0 .. x_{T−2}], no output shift),
  per-block depths (deep-shallow: the deep block is the LAST in forward order, the first one sampled),
  STARFlow patchify '... c (h p1) (w p2) -> ... h w (p1 p2 c)' (features ordered (ki, kj, c)),
  `seq_order` ('R2L': blocks 0, 2, ... keep the token order, as TarFlow; 'L2R': blocks 0, 2, ... flip).
Kiln's combination (not in either reference): STARFlow options together with TarFlow's class
embedding and TarFlow's guidance on the raw α output (before exp / softplus). state_dict order is
TarFlow's (a module's own parameters first: pos_embed, class_embed, then sos_embed; then proj_in,
attn_blocks, proj_out); STARFlow's lists sos_embed before pos_embed and proj_out before attn_blocks
(same names, so checkpoints load either way). Buffers (`var`, `attn_mask`) are not saved.

Each file holds
  param.<state_dict key>   every parameter randomized (randn·0.1; norm weights 1 + 0.2·randn; proj_out
                           randn·proj_out_std, so the zero init hides nothing)
  input.x [B, C, H, W], input.y [B] (i32, conditional configs; −1 = dropped label)
  output.z [B, T, C'] (patch tokens), output.logdet [B], output.loss [], output.nll [B] (nats per
  dim incl. 0.5·log 2π), output.bpd [B] (8-bit images in [−1, 1])
  grad.<key>               d loss / d param
  input.noise [B, T, C'], input.sample_y [B]; output.sample [B, C, H, W] (no guidance),
  output.sample_guided (guidance w, conditional configs), output.denoised (sample after one score
  step with σ = sigma, conditional on sample_y)
and metadata `golden`: JSON {config, param_order, guidance, sigma, about}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "data" / "tarflow"
torch.set_default_dtype(torch.float32)
INV_SOFTPLUS_1 = 0.541324854612918


class Attention(nn.Module):
    def __init__(self, channels, head_dim):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.num_heads = channels // head_dim
        self.head_dim = head_dim

    def forward(self, x, causal=True, cache=None):
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, T, 3 * self.num_heads, -1).transpose(1, 2).chunk(3, dim=1)
        if cache is not None:  # sampling: one new token, attend to everything cached so far
            cache[0].append(k)
            cache[1].append(v)
            k, v = torch.cat(cache[0], 2), torch.cat(cache[1], 2)
            causal = False
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=self.head_dim**-0.5)
        return self.proj(o.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, channels, expansion):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.main = nn.Sequential(nn.Linear(channels, channels * expansion), nn.GELU(), nn.Linear(channels * expansion, channels))

    def forward(self, x):
        return self.main(self.norm(x))


class AttentionBlock(nn.Module):
    def __init__(self, channels, head_dim, expansion):
        super().__init__()
        self.attention = Attention(channels, head_dim)
        self.mlp = MLP(channels, expansion)

    def forward(self, x, cache=None):
        x = x + self.attention(x, cache=cache)
        return x + self.mlp(x)


class MetaBlock(nn.Module):
    def __init__(self, cfg, flip, num_layers):
        super().__init__()
        cin = cfg["in_channels"] * cfg["patch_size"] ** 2
        ch = cfg["channels"]
        T = (cfg["img_size"] // cfg["patch_size"]) ** 2
        self.cfg, self.flip = cfg, flip
        self.proj_in = nn.Linear(cin, ch)
        self.pos_embed = nn.Parameter(torch.randn(T, ch) * 1e-2)
        self.class_embed = nn.Parameter(torch.randn(cfg["num_classes"], 1, ch) * 1e-2) if cfg["num_classes"] else None
        self.sos_embed = nn.Parameter(torch.randn(1, 1, cin)) if cfg["use_sos"] else None
        self.attn_blocks = nn.ModuleList([AttentionBlock(ch, cfg["head_dim"], cfg["expansion"]) for _ in range(num_layers)])
        self.proj_out = nn.Linear(ch, 2 * cin if cfg["nvp"] else cin)
        self.proj_out.weight.data.fill_(0.0)

    def perm(self, x, dim=1):
        return x.flip(dims=[dim]) if self.flip else x

    def cond(self, y, batch):
        if self.class_embed is None:
            return 0
        null = self.class_embed.mean(dim=0)
        if y is None:
            return null
        m = (y < 0).float().view(-1, 1, 1)
        return (1 - m) * self.class_embed[y.clamp(min=0)] + m * null

    def head(self, h):
        """proj_out (+ soft clip) → raw (a, b)."""
        o = self.proj_out(h)
        if self.cfg["soft_clip"] > 0:
            c = self.cfg["soft_clip"]
            o = c * torch.tanh(o / c)
        return o

    def split(self, o):
        if self.cfg["nvp"]:
            return o.chunk(2, dim=-1)
        return torch.zeros_like(o), o

    def scale(self, a):
        return F.softplus(a + INV_SOFTPLUS_1) if self.cfg["use_softplus"] else a.exp()

    def forward(self, x, y):
        x = self.perm(x)
        x_in = x
        if self.sos_embed is not None:
            x = torch.cat([self.sos_embed.expand(x.size(0), -1, -1), x[:, :-1]], dim=1)
        h = self.proj_in(x) + self.perm(self.pos_embed, 0) + self.cond(y, x.size(0))
        for blk in self.attn_blocks:
            h = blk(h)
        o = self.head(h)
        if self.sos_embed is None:
            o = torch.cat([torch.zeros_like(o[:, :1]), o[:, :-1]], dim=1)
        a, b = self.split(o)
        if self.cfg["use_softplus"]:
            s = self.scale(a)
            z, logdet = (x_in - b) / s, -s.log().mean(dim=[1, 2])
        else:
            z, logdet = (x_in - b) * (-a).exp(), -a.mean(dim=[1, 2])
        return self.perm(z), logdet

    def step(self, tok, t, y, caches):
        """One KV-cached step: the input token at position t → raw (a, b) for the produced token."""
        h = self.proj_in(tok) + self.perm(self.pos_embed, 0)[t : t + 1] + self.cond(y, tok.size(0))
        for blk, cache in zip(self.attn_blocks, caches):
            h = blk(h, cache=cache)
        return self.split(self.head(h))

    def reverse(self, z, y, guidance):
        z = self.perm(z)
        x = z.clone()
        B, T, _ = z.shape
        sos = self.sos_embed is not None
        caches = {k: [([], []) for _ in self.attn_blocks] for k in ("c", "u")}
        for t in range(T if sos else T - 1):
            out = t if sos else t + 1
            tok = (self.sos_embed.expand(B, -1, -1) if t == 0 else x[:, t - 1 : t]) if sos else x[:, t : t + 1]
            a, b = self.step(tok, t, y, caches["c"])
            if guidance > 0:
                au, bu = self.step(tok, t, None, caches["u"])
                a, b = a + guidance * (a - au), b + guidance * (b - bu)
            x[:, out] = z[:, out] * self.scale(a[:, 0]) + b[:, 0]
        return self.perm(x)


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        # STARFlow seq_order: 'R2L' (TarFlow's order) flips blocks 1, 3, ...; 'L2R' flips blocks 0, 2, ...
        first = 1 if cfg["seq_order"] == "R2L" else 0
        self.blocks = nn.ModuleList([MetaBlock(cfg, i % 2 == first, n) for i, n in enumerate(cfg["layers_per_block"])])

    def patchify(self, x):
        p = self.cfg["patch_size"]
        if self.cfg["patch_layout"] == "unfold":  # TarFlow: F.unfold → features (c, ki, kj)
            return F.unfold(x, p, stride=p).transpose(1, 2)
        B, C, H, W = x.shape  # STARFlow: '... c (h p1) (w p2) -> ... (h w) (p1 p2 c)'
        return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, t):
        p, C, S = self.cfg["patch_size"], self.cfg["in_channels"], self.cfg["img_size"]
        if self.cfg["patch_layout"] == "unfold":
            return F.fold(t.transpose(1, 2), (S, S), p, stride=p)
        B = t.size(0)
        return t.reshape(B, S // p, S // p, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, S, S)

    def forward(self, x, y=None):
        x = self.patchify(x)
        logdets = torch.zeros(x.size(0))
        for blk in self.blocks:
            x, ld = blk(x, y)
            logdets = logdets + ld
        return x, logdets

    @staticmethod
    def loss(z, logdets):
        return 0.5 * z.pow(2).mean() - logdets.mean()

    def reverse(self, z, y=None, guidance=0.0):
        x = z
        for blk in reversed(self.blocks):
            x = blk.reverse(x, y, guidance)
        return self.unpatchify(x)


def randomize(model: Model, proj_out_std: float, g: torch.Generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * r)
            elif ".proj_out." in name:
                p.copy_(proj_out_std * r)
            else:
                p.copy_(0.1 * r)


def make(name, cfg, *, batch, y=None, sample_y=None, guidance=0.0, sigma=0.1, proj_out_std=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Model(cfg)
    randomize(model, proj_out_std, g)
    S, C, p = cfg["img_size"], cfg["in_channels"], cfg["patch_size"]
    T, Cp = (S // p) ** 2, C * p * p
    D = C * S * S
    x = torch.randn(batch, C, S, S, generator=g).clamp(-2.5, 2.5) * 0.5
    x.requires_grad_(False)
    yt = torch.tensor(y, dtype=torch.int64) if y is not None else None

    z, logdets = model(x, yt)
    loss = Model.loss(z, logdets)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        nll = 0.5 * z.pow(2).flatten(1).mean(1) + 0.5 * math.log(2 * math.pi) - logdets
        bpd = (nll + math.log(128)) / math.log(2)

    tensors = {}
    order = [k for k, _ in model.named_parameters()]
    for k, v in model.named_parameters():
        tensors[f"param.{k}"] = v.detach().clone()
        tensors[f"grad.{k}"] = v.grad.detach().clone()
    tensors["input.x"] = x
    if yt is not None:
        tensors["input.y"] = yt.to(torch.int32)
    tensors["output.z"] = z.detach()
    tensors["output.logdet"] = logdets.detach()
    tensors["output.loss"] = loss.detach()
    tensors["output.nll"] = nll
    tensors["output.bpd"] = bpd

    noise = torch.randn(batch, T, Cp, generator=g)
    sy = torch.tensor(sample_y, dtype=torch.int64) if sample_y is not None else None
    with torch.no_grad():
        sample = model.reverse(noise.clone(), sy, 0.0)
        # sanity: the sampler inverts the forward pass
        zz, _ = model(sample, sy)
        assert torch.allclose(zz, noise, atol=1e-4), (zz - noise).abs().max()
    tensors["input.noise"] = noise
    if sy is not None:
        tensors["input.sample_y"] = sy.to(torch.int32)
    tensors["output.sample"] = sample
    if guidance > 0:
        with torch.no_grad():
            tensors["output.sample_guided"] = model.reverse(noise.clone(), sy, guidance)

    # One denoising step (sample.ipynb): x ← x − (B·D·σ²)·∇ loss = x + σ²·∇ log p(x).
    for q in model.parameters():
        q.requires_grad_(False)
    xs = sample.clone().requires_grad_(True)
    zs, lds = model(xs, sy)
    gx = torch.autograd.grad(Model.loss(zs, lds), [xs])[0]
    tensors["output.denoised"] = (xs - batch * D * sigma**2 * gx).detach()

    info = {
        "config": cfg,
        "param_order": order,
        "guidance": guidance,
        "sigma": sigma,
        "about": "golden/tarflow_golden.py",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(OUT / f"{name}.safetensors"), metadata={"golden": json.dumps(info, sort_keys=True)})
    print(f"{name}: loss {loss.item():.5f}, logdet {logdets.tolist()}, params {sum(p.numel() for p in model.parameters())}")


BASE = dict(expansion=4, nvp=True, use_softplus=False, soft_clip=0.0, use_sos=False, patch_layout="unfold", seq_order="R2L")

if __name__ == "__main__":
    # TarFlow, unconditional, 4x4x2 image, patch 1 → 16 tokens of 2 channels.
    make("tiny_uncond", dict(BASE, in_channels=2, img_size=4, patch_size=1, channels=16, head_dim=8,
                             layers_per_block=[2, 2], num_classes=0), batch=2, seed=1)
    # TarFlow, class-conditional, 8x8x2 image, patch 2 → 16 tokens of 8 channels (unfold layout);
    # one dropped label (−1) in the forward batch; guided sampling.
    make("tiny_cond_p2", dict(BASE, in_channels=2, img_size=8, patch_size=2, channels=16, head_dim=8,
                              layers_per_block=[2, 2], num_classes=3),
         batch=2, y=[2, -1], sample_y=[1, 2], guidance=1.5, seed=2)
    # STARFlow options (softplus scale, soft clip 4, SOS, deep-shallow [1, 1, 2], channels-last patches, L2R),
    # class-conditional (Kiln's combination); larger proj_out so the soft clip bites.
    make("tiny_starflow", dict(BASE, in_channels=2, img_size=8, patch_size=2, channels=16, head_dim=8,
                               layers_per_block=[1, 1, 2], num_classes=3, use_softplus=True, soft_clip=4.0,
                               use_sos=True, patch_layout="channels_last", seq_order="L2R"),
         batch=2, y=[0, 2], sample_y=[2, 0], guidance=1.0, proj_out_std=0.3, seed=3)
