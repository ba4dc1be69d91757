"""Write golden/data/lightningdit/<config>.safetensors: tiny PyTorch references for models/lightningdit.ts
and models/flowMatching.ts, read by test/models/lightningdit.test.ts.

Run from the repository root:  .venv/bin/python golden/lightningdit_golden.py

The model below is a compact re-implementation written from the reference code, keeping its parameter
names, state_dict order and arithmetic (not imported: timm, einops and torchdiffeq are not needed):
- hustvl/LightningDiT @ 2725fed models/lightningdit.py (LightningDiT, LightningDiTBlock, FinalLayer,
  Attention, TimestepEmbedder, LabelEmbedder, get_2d_sincos_pos_embed), models/pos_embed.py
  (VisionRotaryEmbeddingFast), models/rmsnorm.py, models/swiglu_ffn.py; timm PatchEmbed and Mlp.
- facebookresearch/DiT models.py and willisma/SiT models.py are LightningDiT with every flag off
  (SiT and LightningDiT return the first half of the channels when learn_sigma; DiT returns all of them:
  both are stored, as `output.out` and `output.raw`).
- Flow matching (LightningDiT/SiT transport/, Linear path, velocity prediction): x_t = t·x1 + (1−t)·x0
  (x0 noise, x1 data, t=0 noise, t=1 data), u = x1 − x0; loss = mean((v−u)²) + mean(1 − cos(v, u))
  with the cosine over the channel axis (train.py: loss_dict['loss'].mean() + loss_dict['cos_loss'].mean(),
  both mean_flat per sample). Here x0 and t are inputs instead of being drawn.
- Samplers: Euler ODE on the grid linspace(0, 1, N) with the timestep shift s·t / (1 + (s−1)·t)
  (transport/integrators.py ode; torchdiffeq's fixed-grid euler takes one step per grid interval), CFG
  as forward_with_cfg (combined batch [x, x] with labels [y, null]) but on ALL channels and with the
  interval rule of LightningDiT (t < cfg_interval_start → conditional output only); Euler–Maruyama SDE as
  SiT's sample_sde defaults (diffusion_form 'sigma' → w_t = 1 − t, last_step 'Mean', last_step_size 0.04,
  grid linspace(0, 1 − 0.04, N), N − 1 noisy steps then one drift-only step), with the Brownian
  increments fed explicitly.

Each file holds
  param.<state_dict key>   every parameter (randn·0.2, so no zero init hides a bug), except pos_embed,
                           which keeps the reference's sin-cos table (it is frozen)
  input.{x,t,y}            model inputs; output.out, output.raw (see above)
  cotangent.raw            R; the scalar loss is sum(raw · R)
  grad.<key>               d loss / d parameter (trainable parameters only: not pos_embed); gradin.x
and, in the files with `flow` in their metadata:
  fm.input.{x1,x0,t,y}, fm.output.{loss,mse,cos}, fm.grad.<key>     the flow-matching loss
  ode.input.{z,y}, ode.grid, ode.output.x                             Euler ODE sample with CFG
  sde.input.{z,y,noise}, sde.grid, sde.output.x                       Euler–Maruyama SDE sample
Metadata `golden`: JSON {config, param_order, buffers (non-parameter state_dict keys), flow settings}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "data" / "lightningdit"
torch.set_default_dtype(torch.float32)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotate_half(x):
    x = x.reshape(*x.shape[:-1], -1, 2)
    a, b = x.unbind(-1)
    return torch.stack((-b, a), dim=-1).flatten(-2)


class Rope(nn.Module):
    """VisionRotaryEmbeddingFast(dim, pt_seq_len), freqs_for='lang'; buffers freqs_cos/freqs_sin."""

    def __init__(self, dim, pt_seq_len, theta=10000):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        t = torch.arange(pt_seq_len) / pt_seq_len * pt_seq_len
        f = torch.einsum("..., f -> ... f", t, freqs).repeat_interleave(2, dim=-1)
        n = f.shape[0]
        f = torch.cat((f[:, None, :].expand(n, n, -1), f[None, :, :].expand(n, n, -1)), dim=-1)
        self.register_buffer("freqs_cos", f.cos().view(-1, f.shape[-1]))
        self.register_buffer("freqs_sin", f.sin().view(-1, f.shape[-1]))

    def forward(self, x):
        return x * self.freqs_cos + rotate_half(x) * self.freqs_sin


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qk_norm, use_rmsnorm):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        norm = RMSNorm if use_rmsnorm else nn.LayerNorm
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans, dim, p):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=p, stride=p, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t, max_period=10000):
        half = self.freq // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden)

    def forward(self, y):  # eval mode: no label dropout
        return self.embedding_table(y)


def modulate(x, shift, scale):
    y = x * (1 + scale.unsqueeze(1))
    return y if shift is None else y + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, dim, heads, qk_norm, swiglu, rmsnorm, wo_shift, mlp_ratio=4.0):
        super().__init__()
        mk = (lambda: RMSNorm(dim)) if rmsnorm else (lambda: nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6))
        self.norm1, self.norm2 = mk(), mk()  # registered first, as in LightningDiTBlock
        self.attn = Attention(dim, heads, qk_norm, rmsnorm)
        hidden = int(dim * mlp_ratio)
        self.mlp = SwiGLUFFN(dim, int(2 / 3 * hidden)) if swiglu else Mlp(dim, hidden)
        self.wo_shift = wo_shift
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (4 if wo_shift else 6) * dim))

    def forward(self, x, c, rope):
        m = self.adaLN_modulation(c)
        if self.wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = m.chunk(4, dim=1)
            shift_msa = shift_mlp = None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = m.chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope=rope)
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, dim, p, out_channels, rmsnorm):
        super().__init__()
        self.norm_final = RMSNorm(dim) if rmsnorm else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, p * p * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def sincos_2d(dim, grid_size):
    """get_2d_sincos_pos_embed: w goes first in meshgrid, so channels [0, D/2) encode the column."""
    gh = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(gh, gh), axis=0).reshape(2, 1, grid_size, grid_size)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)


class LightningDiT(nn.Module):
    def __init__(self, input_size, patch_size, in_channels, hidden_size, depth, num_heads, num_classes,
                 class_dropout_prob=0.1, learn_sigma=False, use_qknorm=False, use_swiglu=False,
                 use_rope=False, use_rmsnorm=False, wo_shift=False):
        super().__init__()
        self.learn_sigma, self.in_channels = learn_sigma, in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.p = patch_size
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, hidden_size), requires_grad=False)
        self.feat_rope = Rope(hidden_size // num_heads // 2, grid) if use_rope else None
        self.blocks = nn.ModuleList(
            [Block(hidden_size, num_heads, use_qknorm, use_swiglu, use_rmsnorm, wo_shift) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels, use_rmsnorm)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(hidden_size, grid)).float().unsqueeze(0))

    def forward_raw(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for b in self.blocks:
            x = b(x, c, self.feat_rope)
        x = self.final_layer(x, c)
        B, N, _ = x.shape
        h = int(N ** 0.5)
        x = x.reshape(B, h, h, self.p, self.p, self.out_channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(B, self.out_channels, h * self.p, h * self.p)

    def forward(self, x, t, y):
        x = self.forward_raw(x, t, y)
        return x.chunk(2, dim=1)[0] if self.learn_sigma else x


# ------------------------------------------------------------------------------------------------
# Flow matching
# ------------------------------------------------------------------------------------------------


def fm_loss(model, x1, x0, t, y):
    tt = t.view(-1, 1, 1, 1)
    xt = tt * x1 + (1 - tt) * x0
    ut = x1 - x0
    v = model(xt, t, y)
    mse = ((v - ut) ** 2).mean(dim=(1, 2, 3)).mean()
    cos = (1 - F.cosine_similarity(v, ut, dim=1)).mean(dim=(1, 2)).mean()
    return mse + cos, mse, cos


def shifted_grid(n, shift):
    t = torch.linspace(0, 1, n)
    if shift > 0:
        t = torch.tensor([shift * tn / (1 + (shift - 1) * tn) for tn in t])
    return t


def cfg_velocity(model, x, t, y, null, scale, interval_start, channels):
    """forward_with_cfg on all (or `channels` leading) channels; conditional only when t < interval_start."""
    B = x.shape[0]
    out = model(torch.cat([x, x]), torch.full((2 * B,), float(t)), torch.cat([y, torch.full_like(y, null)]))
    cond, uncond = out[:B], out[B:]
    if t < interval_start:
        return cond
    g = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([g, cond[:, channels:]], dim=1)


def sample_ode(model, z, y, n, shift, null, scale, interval_start, channels):
    t = shifted_grid(n, shift)
    x = z
    for i in range(n - 1):
        x = x + (t[i + 1] - t[i]) * cfg_velocity(model, x, t[i], y, null, scale, interval_start, channels)
    return x, t


def sample_sde(model, z, y, n, noise, last_step_size=0.04):
    t = torch.linspace(0, 1 - last_step_size, n)
    dt = t[1] - t[0]
    B = z.shape[0]

    def drift(x, ti):
        tb = torch.ones(B) * ti
        v = model(x, tb, y)
        tx = tb.view(-1, 1, 1, 1)
        score = (tx * v - x) / (1 - tx)  # ICPlan.get_score_from_velocity
        w = 1 - tx  # diffusion_form 'sigma', norm 1
        return v + w * score, w

    x = z
    for i in range(n - 1):
        d, w = drift(x, t[i])
        mean_x = x + d * dt
        x = mean_x + torch.sqrt(2 * w) * (noise[i] * torch.sqrt(dt))
    d, _ = drift(x, t[-1])
    return x + d * last_step_size, t


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------

CONFIGS = {
    # LightningDiT as FAE uses it: RoPE, RMSNorm, SwiGLU (+ qk-norm here, with RMSNorm), patch 1.
    "lightningdit_p1": dict(input_size=4, patch_size=1, in_channels=4, hidden_size=32, depth=2, num_heads=2,
                            num_classes=10, use_qknorm=True, use_swiglu=True, use_rope=True, use_rmsnorm=True),
    # Mixed flags: LayerNorm (so LayerNorm qk-norm), Mlp, RoPE, no shift, learn_sigma, patch 2.
    "lightningdit_p2_mixed": dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=1, num_heads=2,
                                  num_classes=10, learn_sigma=True, use_qknorm=True, use_rope=True, wo_shift=True),
    # Plain DiT / SiT (every flag off), learn_sigma as DiT's default, patch 2.
    "dit_p2": dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=1, num_heads=2,
                   num_classes=10, learn_sigma=True),
}
FLOW = {"lightningdit_p1": dict(ode_steps=5, shift=0.3, cfg_scale=3.0, cfg_interval_start=0.2, sde_steps=4,
                                last_step_size=0.04)}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, cfg in CONFIGS.items():
        g = torch.Generator().manual_seed(1234 + sum(map(ord, name)))
        r = lambda *s: torch.randn(*s, generator=g)
        model = LightningDiT(**cfg)
        for k, p in model.named_parameters():
            if k != "pos_embed":
                p.data.copy_(r(*p.shape) * 0.2)
        sd = model.state_dict()
        params = [k for k, _ in model.named_parameters()]
        buffers = [k for k in sd if k not in params]
        order = [k for k in sd if k in params]
        C, S, B = cfg["in_channels"], cfg["input_size"], 3
        x = r(B, C, S, S)
        t = torch.tensor([0.05, 0.5, 0.93])
        y = torch.tensor([1, 7, cfg["num_classes"]])  # the last one is the null (CFG) class
        xg = x.clone().requires_grad_(True)
        raw = model.forward_raw(xg, t, y)
        out = model(x, t, y)
        R = r(*raw.shape)
        (raw * R).sum().backward()
        T = {f"param.{k}": v.detach().clone() for k, v in sd.items() if k in params}
        T.update({"input.x": x, "input.t": t, "input.y": y.to(torch.int32), "output.raw": raw.detach(),
                  "output.out": out.detach(), "cotangent.raw": R, "gradin.x": xg.grad})
        for k, p in model.named_parameters():
            if p.requires_grad:
                T[f"grad.{k}"] = p.grad.clone()
        info = {"config": cfg, "param_order": order, "buffers": buffers}

        if name in FLOW:
            f = FLOW[name]
            info["flow"] = f
            model.zero_grad()
            x1, x0 = r(B, C, S, S), r(B, C, S, S)
            tf = torch.sigmoid(r(B))
            loss, mse, cos = fm_loss(model, x1, x0, tf, y)
            loss.backward()
            T.update({"fm.input.x1": x1, "fm.input.x0": x0, "fm.input.t": tf, "fm.input.y": y.to(torch.int32),
                      "fm.output.loss": loss.detach().reshape(1), "fm.output.mse": mse.detach().reshape(1),
                      "fm.output.cos": cos.detach().reshape(1)})
            for k, p in model.named_parameters():
                if p.requires_grad:
                    T[f"fm.grad.{k}"] = p.grad.clone()
            with torch.no_grad():
                z, ys = r(2, C, S, S), torch.tensor([3, 7])
                xo, grid = sample_ode(model, z, ys, f["ode_steps"], f["shift"], cfg["num_classes"], f["cfg_scale"],
                                      f["cfg_interval_start"], C)
                T.update({"ode.input.z": z, "ode.input.y": ys.to(torch.int32), "ode.grid": grid, "ode.output.x": xo})
                noise = r(f["sde_steps"] - 1, 2, C, S, S)
                xs, sgrid = sample_sde(model, z, ys, f["sde_steps"], noise, f["last_step_size"])
                T.update({"sde.input.z": z, "sde.input.y": ys.to(torch.int32), "sde.input.noise": noise,
                          "sde.grid": sgrid, "sde.output.x": xs})

        path = OUT / f"{name}.safetensors"
        save_file({k: v.detach().clone().contiguous() for k, v in T.items()}, str(path), metadata={"golden": json.dumps(info, sort_keys=True)})
        size = path.stat().st_size
        total += size
        print(f"{path.relative_to(OUT.parent.parent)}: {len(T)} tensors, {len(order)} parameters, {size / 1024:.0f} KiB")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
