"""Write golden/data/nn/<layer>_<config>.safetensors: tiny PyTorch references for every layer of
compiler/dsl/nn, read by test/nn/layers.test.ts.

Run from the repository root:  .venv/bin/python golden/nn_layers.py

The reference modules below are written from the reference code (not imported, so timm/einops are
not needed), keeping the reference's parameter names, layouts and arithmetic:
- DiT (facebookresearch/DiT models.py): TimestepEmbedder, LabelEmbedder, modulate, adaLN_modulation,
  unpatchify, get_2d_sincos_pos_embed / get_1d_sincos_pos_embed_from_grid.
- LightningDiT (hustvl/LightningDiT @ 2725fed, models/): Attention (lightningdit.py), RMSNorm
  (rmsnorm.py), SwiGLUFFN (swiglu_ffn.py), VisionRotaryEmbeddingFast (pos_embed.py, = EVA-02
  baaivision/EVA EVA-02/asuka/rope.py), modulate with an optional shift.
- timm (vision_transformer.py): Mlp (fc1, act, fc2), PatchEmbed (proj = Conv2d(k = s = p), flatten).
- transformers Dinov2SwiGLUFFN (weights_in / weights_out naming, hidden rule (int(h·2/3)+7)//8·8).
Kiln additions not in a reference are marked as such (Attention's `causal` option).

Each file holds
  param.<state_dict key>     parameter values (every parameter randn·0.5, so no default/zero init hides a bug)
  input.<name>               inputs (f32; integer inputs as i32)
  output.<name>              outputs
  cotangent.<output name>    a fixed random tensor R per output; the scalar loss is Σ_outputs sum(out·R)
  grad.<state_dict key>      d loss / d parameter
  gradin.<name>              d loss / d input (float inputs only)
and one metadata entry `golden`: JSON {layer, config, param_order (the state_dict key order), about}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "data" / "nn"
torch.set_default_dtype(torch.float32)


# --------------------------------------------------------------------------------------------
# Reference modules
# --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """LightningDiT models/rmsnorm.py (Llama): computed in f32, cast back, then times weight."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def rotate_half(x):
    """EVA rotate_half: adjacent pairs (x0, x1) -> (-x1, x0)."""
    x = x.reshape(*x.shape[:-1], -1, 2)
    x1, x2 = x.unbind(dim=-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


class VisionRotaryEmbeddingFast(nn.Module):
    """EVA-02 / LightningDiT VisionRotaryEmbeddingFast, freqs_for='lang' (the only mode used)."""

    def __init__(self, dim: int, pt_seq_len: int = 16, ft_seq_len: int | None = None, theta: float = 10000):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
        if ft_seq_len is None:
            ft_seq_len = pt_seq_len
        t = torch.arange(ft_seq_len) / ft_seq_len * pt_seq_len
        freqs = torch.einsum("..., f -> ... f", t, freqs)
        freqs = freqs.repeat_interleave(2, dim=-1)  # einops repeat '... n -> ... (n r)', r=2
        n = freqs.shape[0]
        # broadcat((freqs[:, None, :], freqs[None, :, :]), dim=-1): rows first, then columns.
        freqs = torch.cat((freqs[:, None, :].expand(n, n, -1), freqs[None, :, :].expand(n, n, -1)), dim=-1)
        self.register_buffer("freqs_cos", freqs.cos().view(-1, freqs.shape[-1]))
        self.register_buffer("freqs_sin", freqs.sin().view(-1, freqs.shape[-1]))

    def forward(self, t):
        return t * self.freqs_cos + rotate_half(t) * self.freqs_sin


class Attention(nn.Module):
    """LightningDiT Attention (timm-style). `qk_norm` is 'none' | 'layernorm' | 'rmsnorm'
    (LightningDiT: qk_norm=True with use_rmsnorm picks RMSNorm, else nn.LayerNorm).
    `causal` is a Kiln addition (SDPA is_causal)."""

    def __init__(self, dim, num_heads, qkv_bias=False, qk_norm="none", causal=False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.causal = causal
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        norm = {"none": lambda d: nn.Identity(), "layernorm": nn.LayerNorm, "rmsnorm": RMSNorm}[qk_norm]
        self.q_norm = norm(self.head_dim)
        self.k_norm = norm(self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope=None):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q = rope(q)
            k = rope(k)
        x = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    """timm Mlp: fc1 -> act -> fc2 (dropout 0, no norm)."""

    def __init__(self, in_features, hidden_features, out_features=None, approximate="none", bias=True):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """LightningDiT/DINOv2 SwiGLUFFN (w12, w3) or HF Dinov2SwiGLUFFN (weights_in, weights_out)."""

    def __init__(self, in_features, hidden_features, out_features=None, bias=True, names=("w12", "w3")):
        super().__init__()
        out_features = out_features or in_features
        self.names = names
        setattr(self, names[0], nn.Linear(in_features, 2 * hidden_features, bias=bias))
        setattr(self, names[1], nn.Linear(hidden_features, out_features, bias=bias))

    def forward(self, x):
        x1, x2 = getattr(self, self.names[0])(x).chunk(2, dim=-1)
        return getattr(self, self.names[1])(F.silu(x1) * x2)


class PatchEmbed(nn.Module):
    """timm PatchEmbed (flatten=True, norm=Identity): Conv2d(k = s = p), then [B, N, dim]."""

    def __init__(self, patch_size, in_chans, embed_dim, bias=True):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def unpatchify(x, p, c):
    """DiT unpatchify: [B, T, p·p·c] -> [B, c, h·p, h·p]."""
    h = w = int(x.shape[1] ** 0.5)
    assert h * w == x.shape[1]
    x = x.reshape(x.shape[0], h, w, p, p, c)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(x.shape[0], c, h * p, h * p)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)  # w goes first
    grid = grid.reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])  # (the column coordinate)
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])  # (the row coordinate)
    return np.concatenate([emb_h, emb_w], axis=1)


class TimestepEmbedder(nn.Module):
    """DiT TimestepEmbedder: [cos, sin] frequency embedding -> mlp.0 -> SiLU -> mlp.2."""

    def __init__(self, hidden_size, frequency_embedding_size=256, max_period=10000):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size
        self.max_period = max_period

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size, self.max_period))


class LabelEmbedder(nn.Module):
    """DiT LabelEmbedder (the random token_drop path is not reproducible across RNGs: tested in TS)."""

    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels, force_drop_ids=None):
        if force_drop_ids is not None:
            labels = torch.where(force_drop_ids == 1, self.num_classes, labels)
        return self.embedding_table(labels)


def modulate(x, shift, scale):
    """DiT modulate; LightningDiT allows shift=None (wo_shift)."""
    if shift is None:
        return x * (1 + scale.unsqueeze(1))
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class AdaLNHolder(nn.Module):
    """A DiT block's adaLN_modulation = Sequential(SiLU, Linear(c, n·dim)) -> n chunks."""

    def __init__(self, cond_dim, dim, n):
        super().__init__()
        self.n = n
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, n * dim, bias=True))

    def forward(self, c):
        return self.adaLN_modulation(c).chunk(self.n, dim=1)


# --------------------------------------------------------------------------------------------
# Golden writer
# --------------------------------------------------------------------------------------------

written: list[tuple[str, int]] = []


def randomize(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def emit(
    name: str,
    layer: str,
    config: dict,
    module: nn.Module | None,
    inputs: dict[str, torch.Tensor],
    run: Callable[..., dict[str, torch.Tensor]],
    about: str,
    seed: int,
) -> None:
    """Run `run(**inputs)` (after randomizing `module`), backprop Σ sum(out·R), save everything."""
    gen = torch.Generator().manual_seed(seed + 1000)
    params = dict(module.named_parameters()) if module is not None else {}
    if module is not None:
        randomize(module, gen)
    ins = {k: (v.clone().requires_grad_(True) if v.is_floating_point() else v) for k, v in inputs.items()}
    outs = run(**ins)
    tensors: dict[str, torch.Tensor] = {}
    loss = None
    for k, o in outs.items():
        tensors[f"output.{k}"] = o.detach().float().contiguous()
        if o.requires_grad:
            r = torch.randn(o.shape, generator=gen)
            tensors[f"cotangent.{k}"] = r
            term = (o * r).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        grads = torch.autograd.grad(
            loss, [*params.values(), *[v for v in ins.values() if v.requires_grad]], allow_unused=True
        )
        gp, gi = grads[: len(params)], grads[len(params) :]
        for (k, p), g in zip(params.items(), gp):
            tensors[f"grad.{k}"] = (g if g is not None else torch.zeros_like(p)).contiguous()
        for k, g in zip([k for k, v in ins.items() if v.requires_grad], gi):
            tensors[f"gradin.{k}"] = (g if g is not None else torch.zeros_like(ins[k])).contiguous()
    for k, p in params.items():
        tensors[f"param.{k}"] = p.detach().clone().contiguous()
    for k, v in inputs.items():
        tensors[f"input.{k}"] = (v.detach().float() if v.is_floating_point() else v.to(torch.int32)).contiguous()
    # One metadata key: safetensors writes metadata from a hash map, so several keys come out in a
    # random order and regenerating would change the bytes of unchanged goldens.
    info = {"layer": layer, "config": config, "param_order": list(params.keys()), "about": about}
    metadata = {"golden": json.dumps(info, sort_keys=True)}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    size = path.stat().st_size
    assert size < 50_000, f"{path} is {size} bytes"
    written.append((path.name, size))


def check_against_hf_dinov2_swiglu(m: SwiGLUFFN, dim: int) -> None:
    """Sanity check (when transformers is installed): same state_dict keys, shapes and outputs."""
    try:
        from transformers import Dinov2Config
        from transformers.models.dinov2.modeling_dinov2 import Dinov2SwiGLUFFN
    except ImportError:
        return
    hf = Dinov2SwiGLUFFN(Dinov2Config(hidden_size=dim, mlp_ratio=4, num_attention_heads=1))
    hf.load_state_dict(m.state_dict())  # strict: same keys and shapes
    x = randn(3, dim, seed=999)
    with torch.no_grad():
        assert torch.equal(hf(x), m(x)), "SwiGLUFFN differs from transformers' Dinov2SwiGLUFFN"


def randn(*shape, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def main() -> None:
    torch.manual_seed(0)

    # ---- Linear ----
    for i, bias in enumerate([True, False]):
        m = nn.Linear(5, 7, bias=bias)
        emit(f"linear_{'bias' if bias else 'nobias'}", "linear", {"in": 5, "out": 7, "bias": bias}, m,
             {"x": randn(2, 3, 5, seed=10 + i)}, lambda x, m=m: {"out": m(x)}, "torch.nn.Linear", 10 + i)

    # ---- LayerNorm ----
    for i, (eps, affine) in enumerate([(1e-6, False), (1e-5, True)]):
        m = nn.LayerNorm(8, eps=eps, elementwise_affine=affine)
        emit(f"layernorm_{'affine' if affine else 'plain'}", "layernorm", {"dim": 8, "eps": eps, "affine": affine}, m,
             {"x": randn(2, 3, 8, seed=20 + i, scale=2.0) + 0.5}, lambda x, m=m: {"out": m(x)},
             "torch.nn.LayerNorm", 20 + i)

    # ---- RMSNorm ----
    for i, (eps, scale) in enumerate([(1e-6, 1.0), (1e-5, 0.01)]):
        m = RMSNorm(8, eps=eps)
        emit(f"rmsnorm_{'default' if i == 0 else 'smallinput'}", "rmsnorm", {"dim": 8, "eps": eps}, m,
             {"x": randn(2, 3, 8, seed=30 + i, scale=scale)}, lambda x, m=m: {"out": m(x)},
             "LightningDiT models/rmsnorm.py RMSNorm", 30 + i)

    # ---- 2D RoPE (VisionRotaryEmbeddingFast) ----
    rope_cfgs = [
        ("rope_pt3", {"dim": 4, "pt_seq_len": 3, "ft_seq_len": None, "theta": 10000}, (2, 2)),
        ("rope_ft3_pt4_theta100", {"dim": 8, "pt_seq_len": 4, "ft_seq_len": 3, "theta": 100}, (1, 2)),
        ("rope_dim6_ft5_pt2", {"dim": 6, "pt_seq_len": 2, "ft_seq_len": 5, "theta": 10000}, (1, 1)),
    ]
    for i, (name, cfg, (b, h)) in enumerate(rope_cfgs):
        rope = VisionRotaryEmbeddingFast(cfg["dim"], cfg["pt_seq_len"], cfg["ft_seq_len"], cfg["theta"])
        n, hd = rope.freqs_cos.shape
        emit(name, "rope", cfg, None, {"x": randn(b, h, n, hd, seed=40 + i)},
             lambda x, rope=rope: {"out": rope(x), "freqs_cos": rope.freqs_cos, "freqs_sin": rope.freqs_sin},
             "LightningDiT models/pos_embed.py VisionRotaryEmbeddingFast (= EVA-02 asuka/rope.py)", 40 + i)

    # ---- Attention ----
    attn_cfgs = [
        # name, dim, heads, qkv_bias, qk_norm, causal, rope (pt, ft) or None, batch, tokens
        ("attention_dit", 16, 2, True, "none", False, None, 2, 5),
        ("attention_lightningdit", 16, 2, True, "rmsnorm", False, (3, None), 2, 9),
        ("attention_lnqk_causal", 12, 3, False, "layernorm", True, None, 2, 6),
        ("attention_rope_causal", 16, 2, True, "none", True, (2, 4), 1, 16),
    ]
    for i, (name, dim, heads, qkv_bias, qk_norm, causal, rope_cfg, b, n) in enumerate(attn_cfgs):
        m = Attention(dim, heads, qkv_bias=qkv_bias, qk_norm=qk_norm, causal=causal)
        rope = None
        cfg = {"dim": dim, "num_heads": heads, "qkv_bias": qkv_bias, "qk_norm": qk_norm, "causal": causal, "rope": None}
        if rope_cfg is not None:
            pt, ft = rope_cfg
            rope = VisionRotaryEmbeddingFast(dim // heads // 2, pt, ft)  # as LightningDiT: half the head dim
            cfg["rope"] = {"dim": dim // heads // 2, "pt_seq_len": pt, "ft_seq_len": ft, "theta": 10000}
        emit(name, "attention", cfg, m, {"x": randn(b, n, dim, seed=50 + i)},
             lambda x, m=m, rope=rope: {"out": m(x, rope)},
             "LightningDiT models/lightningdit.py Attention (+ Kiln's causal option)", 50 + i)

    # ---- Mlp ----
    for i, (approx, bias, out) in enumerate([("none", True, None), ("tanh", False, 5)]):
        m = Mlp(6, 10, out, approximate=approx, bias=bias)
        cfg = {"in": 6, "hidden": 10, "out": out, "act": "gelu" if approx == "none" else "gelu_tanh", "bias": bias}
        emit(f"mlp_{cfg['act']}", "mlp", cfg, m, {"x": randn(2, 3, 6, seed=60 + i, scale=2.0)},
             lambda x, m=m: {"out": m(x)}, "timm Mlp", 60 + i)

    # ---- SwiGLU ----
    lightning_hidden = int(2 / 3 * int(6 * 4.0))  # LightningDiT: int(2/3 * int(dim * mlp_ratio))
    dinov2_hidden = (int(int(10 * 4.0) * 2 / 3) + 7) // 8 * 8  # DINOv2: (int(h * 2/3) + 7) // 8 * 8
    swiglu_cfgs = [
        ("swiglu_lightningdit", 6, lightning_hidden, None, True, ("w12", "w3")),
        ("swiglu_dinov2_hf", 10, dinov2_hidden, None, True, ("weights_in", "weights_out")),
        ("swiglu_nobias", 6, 8, 4, False, ("w12", "w3")),
    ]
    for i, (name, d, hidden, out, bias, names) in enumerate(swiglu_cfgs):
        m = SwiGLUFFN(d, hidden, out, bias=bias, names=names)
        cfg = {"in": d, "hidden": hidden, "out": out, "bias": bias, "names": list(names), "mlp_ratio": 4.0}
        emit(name, "swiglu", cfg, m, {"x": randn(2, 3, d, seed=70 + i)}, lambda x, m=m: {"out": m(x)},
             "LightningDiT models/swiglu_ffn.py SwiGLUFFN / transformers Dinov2SwiGLUFFN", 70 + i)
        if names[0] == "weights_in":
            check_against_hf_dinov2_swiglu(m, d)

    # ---- PatchEmbed ----
    for i, (p, c, hgt, wid, dim, bias) in enumerate([(2, 3, 4, 6, 8, True), (1, 4, 3, 3, 8, False)]):
        m = PatchEmbed(p, c, dim, bias=bias)
        cfg = {"patch_size": p, "in_chans": c, "embed_dim": dim, "bias": bias}
        emit(f"patch_embed_p{p}", "patch_embed", cfg, m, {"x": randn(2, c, hgt, wid, seed=80 + i)},
             lambda x, m=m: {"out": m(x)}, "timm PatchEmbed (Conv2d k=s=p, flatten(2).transpose(1, 2))", 80 + i)

    # ---- Unpatchify ----
    for i, (p, c, h) in enumerate([(2, 3, 2), (1, 4, 3)]):
        cfg = {"patch_size": p, "channels": c}
        emit(f"unpatchify_p{p}", "unpatchify", cfg, None, {"x": randn(2, h * h, p * p * c, seed=90 + i)},
             lambda x, p=p, c=c: {"out": unpatchify(x, p, c)}, "DiT models.py unpatchify", 90 + i)

    # ---- sin-cos position embeddings (no inputs) ----
    for i, (d, g) in enumerate([(16, 4), (8, 3)]):
        emb = torch.from_numpy(get_2d_sincos_pos_embed(d, g)).float()
        emit(f"sincos2d_d{d}_g{g}", "sincos2d", {"embed_dim": d, "grid_size": g}, None, {},
             lambda emb=emb: {"out": emb}, "DiT models.py get_2d_sincos_pos_embed", 100 + i)
    pos = np.arange(5, dtype=np.float64) * 1.5
    emb1 = torch.from_numpy(get_1d_sincos_pos_embed_from_grid(6, pos)).float()
    emit("sincos1d_d6", "sincos1d", {"embed_dim": 6, "pos": pos.tolist()}, None, {},
         lambda: {"out": emb1}, "DiT models.py get_1d_sincos_pos_embed_from_grid", 102)

    # ---- TimestepEmbedder ----
    ts_cfgs = [
        ("timestep_sit", 8, 256, torch.rand(3, generator=torch.Generator().manual_seed(110))),  # t in [0, 1)
        ("timestep_dit_odd", 6, 15, torch.tensor([0.0, 17.0, 500.0, 999.0])),  # DiT integer steps, odd dim
        ("timestep_dit", 4, 256, torch.tensor([0.0, 1.0, 250.0, 999.0])),  # DiT integer steps, 256 freqs
    ]
    for i, (name, hidden, fdim, t) in enumerate(ts_cfgs):
        m = TimestepEmbedder(hidden, fdim)
        cfg = {"hidden": hidden, "frequency_embedding_size": fdim, "max_period": 10000}
        emit(name, "timestep", cfg, m, {"t": t},
             lambda t, m=m: {"out": m(t), "t_freq": TimestepEmbedder.timestep_embedding(t, m.frequency_embedding_size)},
             "DiT models.py TimestepEmbedder", 110 + i)

    # ---- LabelEmbedder ----
    label_cfgs = [
        ("label_eval", 5, 4, 0.1, torch.tensor([0, 4, 2, 1]), None),
        ("label_forcedrop", 5, 4, 0.1, torch.tensor([0, 4, 2, 1]), torch.tensor([1, 0, 0, 1])),
        ("label_nodropout", 5, 4, 0.0, torch.tensor([3, 0, 4]), None),
    ]
    for i, (name, nc, hidden, p, labels, force) in enumerate(label_cfgs):
        m = LabelEmbedder(nc, hidden, p)
        cfg = {"num_classes": nc, "hidden": hidden, "dropout_prob": p}
        ins = {"labels": labels} if force is None else {"labels": labels, "force_drop_ids": force}
        emit(name, "label", cfg, m, ins, lambda m=m, **kw: {"out": m(kw["labels"], kw.get("force_drop_ids"))},
             "DiT models.py LabelEmbedder (eval / force_drop_ids paths)", 120 + i)

    # ---- adaLN modulation + modulate ----
    ada_cfgs = [("adaln_n6", 8, 8, 6, True), ("adaln_n2", 6, 4, 2, True), ("adaln_n4_noshift", 6, 4, 4, False)]
    for i, (name, cdim, dim, n, shift) in enumerate(ada_cfgs):
        m = AdaLNHolder(cdim, dim, n)
        cfg = {"cond_dim": cdim, "dim": dim, "n": n, "shift": shift}

        def run(x, c, m=m, shift=shift):
            chunks = m(c)
            mod = modulate(x, chunks[0], chunks[1]) if shift else modulate(x, None, chunks[0])
            return {**{f"chunk{j}": ch for j, ch in enumerate(chunks)}, "modulated": mod}

        emit(name, "adaln", cfg, m, {"x": randn(2, 3, dim, seed=130 + i), "c": randn(2, cdim, seed=140 + i)}, run,
             "DiT adaLN_modulation = Sequential(SiLU, Linear) + modulate (LightningDiT: optional shift)", 130 + i)

    total = sum(s for _, s in written)
    for n, s in written:
        print(f"{s:7d}  {n}")
    print(f"{total:7d}  total ({len(written)} files)")
    assert total < 500_000


if __name__ == "__main__":
    main()
