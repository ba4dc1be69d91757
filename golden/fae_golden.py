"""Write golden/data/fae/tiny.safetensors: a PyTorch reference of Kiln's FAE (models/fae/*.ts) at a
tiny size, read by test/models/fae.test.ts.

Run from the repository root:  .venv/bin/python golden/fae_golden.py

The FAE paper (arXiv 2512.07829) has no code; these modules are Kiln's own reference of the
structure documented in models/fae/*.ts, written with plain torch (no timm/einops), keeping the
parameter names Kiln uses (the state_dict keys of `FAE` below). The blocks follow the references
the Kiln nn library was checked against: timm's ViT block/Attention/Mlp, LightningDiT's RMSNorm,
SwiGLUFFN and VisionRotaryEmbeddingFast (EVA-02), MAE/DiT's 2D sin-cos table and DiT's unpatchify;
the adaptive GAN weight and hinge losses follow taming-transformers (VQLPIPSWithDiscriminator).

Every parameter is randomized (no default or zero init can hide a bug): matrices N(0, 1/fan_in),
biases N(0, 0.2²), norm scales 1 + N(0, 0.2²), the encoder's pos_embed N(0, 0.5²). Noise is fixed
and fed explicitly: ε of the latent, ε of the feature noise, u of the per-sample σ.

File contents (f32):
  param.<key>                 FAE state_dict (encoder, adapter, feature_decoder, pixel_decoder, discriminator)
  input.images                [B, 3, 16, 16] in [-1, 1)
  input.features              the frozen encoder's tokens of the images [B, 16, 16]
  input.noise.latent          ε [B, 16, C]
  input.noise.features        ε [B, 16, D]
  input.noise.sigma           u [B] in [0, 1)
  output.ia.*                 stage Ia (sampled z): mean, logvar, z, decoded, feature_mse, kl, loss
  grad.ia.<key>               d loss_Ia / d adapter.*, feature_decoder.*
  output.ia_mode.*            stage Ia with z = mean: decoded, loss
  output.ib.*                 stage Ib: features, reconstruction, l1, mse, perceptual, rec_loss,
                              logits_fake, g_loss, rec_grad_norm, gan_grad_norm, adaptive_weight,
                              gan_weight, loss (σ = 0.4, disc_factor 1)
  grad.ib.<key>               d loss_Ib / d pixel_decoder.* (adaptive weight detached)
  output.ib_uniform.reconstruction   the pixel decoder on features + 0.8·u_b·ε (RAE-style σ)
  output.resize.*             F.interpolate(images, size, mode='bicubic', align_corners=False[, antialias])
                              to 12 px (plain and antialiased) and 20 px (models/fae/dinov2Encoder.ts)
  output.d.*                  discriminator step on (images, reconstruction.detach()): logits_real,
                              logits_fake, loss
  grad.d.<key>                d loss_D / d discriminator.*
and metadata `golden`: JSON {config (= Kiln's tinyFaeConfig()), encoder (ViTFeatureEncoder config),
batch, param_order}.
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

OUT = Path(__file__).resolve().parent / "data" / "fae"
torch.set_default_dtype(torch.float32)

CONFIG = {
    "encoder": {"dim": 16, "grid": 4},
    "adapter": {"heads": 2, "headDim": 12, "latentChannels": 4, "activation": "gelu", "normEps": 1e-6, "logvarClamp": [-30, 20]},
    "featureDecoder": {"depth": 2, "heads": 2, "mlpHidden": 24, "normEps": 1e-6, "ropeTheta": 10000},
    "pixelDecoder": {"dim": 24, "depth": 2, "heads": 2, "mlpHidden": 40, "patchSize": 4, "channels": 3, "normEps": 1e-6},
    "discriminator": {"channels": [8, 12], "patchSizes": [2, 2], "leakySlope": 0.2},
    "featureNoise": {"kind": "fixed", "sigma": 0.4},
    "loss": {"klWeight": 0.01, "l1Weight": 1, "mseWeight": 0.5, "perceptualWeight": 0.7, "discriminatorWeight": 0.8},
}
ENCODER = {"dim": 16, "depth": 1, "heads": 2, "mlpHidden": 32, "patchSize": 4, "imageSize": 16, "channels": 3}
BATCH = 2
UNIFORM_MAX = 0.8


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x = x.reshape(*x.shape[:-1], -1, 2)
    a, b = x.unbind(-1)
    return torch.stack((-b, a), dim=-1).flatten(-2)


class Rope2d(nn.Module):
    """EVA-02 VisionRotaryEmbeddingFast with dim = head_dim / 2 and pt_seq_len = ft_seq_len = grid."""

    def __init__(self, head_dim, grid, theta):
        super().__init__()
        dim = head_dim // 2
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        t = torch.arange(grid) / grid * grid
        f = torch.einsum("i,f->if", t, freqs).repeat_interleave(2, dim=-1)  # [grid, 2·(dim//2)]
        full = torch.cat([f[:, None, :].expand(grid, grid, -1), f[None, :, :].expand(grid, grid, -1)], dim=-1)
        self.register_buffer("cos", full.cos().reshape(grid * grid, -1), persistent=False)
        self.register_buffer("sin", full.sin().reshape(grid * grid, -1), persistent=False)

    def forward(self, x):
        return x * self.cos + rotate_half(x) * self.sin


class Attention(nn.Module):
    """timm-style attention with an inner width heads·head_dim that may differ from dim."""

    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.h, self.hd = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=True)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x, rope=None):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, self.hd).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = rope(q), rope(k)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, n, self.h * self.hd))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class ViTBlock(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, dim // heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_2d(dim, grid):
    """MAE/DiT get_2d_sincos_pos_embed: first half of the channels encodes the column."""

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    emb = np.concatenate([one_d(dim // 2, cols.reshape(-1)), one_d(dim // 2, rows.reshape(-1))], axis=1)
    return torch.from_numpy(emb).float()


# ------------------------------------------------------------------------------------------------
# FAE parts
# ------------------------------------------------------------------------------------------------


class ViTEncoder(nn.Module):
    """The frozen stand-in encoder (Kiln's ViTFeatureEncoder)."""

    def __init__(self, c):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(c["channels"], c["dim"], c["patchSize"], stride=c["patchSize"])
        n = (c["imageSize"] // c["patchSize"]) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, n, c["dim"]))
        self.blocks = nn.ModuleList([ViTBlock(c["dim"], c["heads"], c["mlpHidden"], 1e-6) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(c["dim"], eps=1e-6)

    def forward(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


class Adapter(nn.Module):
    def __init__(self, dim, c):
        super().__init__()
        self.c = c
        self.norm = RMSNorm(dim, c["normEps"])
        self.attn = Attention(dim, c["heads"], c["headDim"])
        self.head = nn.Linear(dim, 2 * c["latentChannels"])

    def forward(self, x):
        h = x + self.attn(self.norm(x))
        a = F.gelu(h) if self.c["activation"] == "gelu" else F.silu(h)
        mean, logvar = self.head(a).chunk(2, dim=-1)
        lo, hi = self.c["logvarClamp"]
        return mean, logvar.clamp(lo, hi)


class RopeBlock(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = RMSNorm(dim, eps)
        self.attn = Attention(dim, heads, dim // heads)
        self.norm2 = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x, rope):
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class FeatureDecoder(nn.Module):
    def __init__(self, latent, dim, grid, c):
        super().__init__()
        self.input_proj = nn.Linear(latent, dim)
        self.blocks = nn.ModuleList([RopeBlock(dim, c["heads"], c["mlpHidden"], c["normEps"]) for _ in range(c["depth"])])
        self.norm = RMSNorm(dim, c["normEps"])
        self.output_proj = nn.Linear(dim, dim)
        self.rope = Rope2d(dim // c["heads"], grid, c["ropeTheta"])

    def forward(self, z):
        x = self.input_proj(z)
        for b in self.blocks:
            x = b(x, self.rope)
        return self.output_proj(self.norm(x))


class PixelDecoder(nn.Module):
    def __init__(self, feat_dim, grid, c):
        super().__init__()
        self.c, self.grid = c, grid
        self.input_proj = nn.Linear(feat_dim, c["dim"])
        self.blocks = nn.ModuleList([ViTBlock(c["dim"], c["heads"], c["mlpHidden"], c["normEps"]) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(c["dim"], eps=c["normEps"])
        p, ch = c["patchSize"], c["channels"]
        self.output_proj = nn.Linear(c["dim"], p * p * ch)
        self.register_buffer("pos", sincos_2d(c["dim"], grid), persistent=False)

    def forward(self, f):
        x = self.input_proj(f) + self.pos
        for b in self.blocks:
            x = b(x)
        y = self.output_proj(self.norm(x))
        b, g, p, ch = y.shape[0], self.grid, self.c["patchSize"], self.c["channels"]
        y = torch.einsum("nhwpqc->nchpwq", y.reshape(b, g, g, p, p, ch))
        return y.reshape(b, ch, g * p, g * p)


class DiscLayer(nn.Module):
    def __init__(self, cin, cout, k, norm):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=k)
        self.norm = nn.LayerNorm(cout) if norm else None


class PatchDiscriminator(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.slope = c["leakySlope"]
        ch = [cin] + c["channels"]
        self.layers = nn.ModuleList([DiscLayer(ch[i], ch[i + 1], k, i > 0) for i, k in enumerate(c["patchSizes"])])
        self.head = nn.Linear(ch[-1], 1)

    def forward(self, x):
        for l in self.layers:
            y = l.conv(x)
            b, c, h, w = y.shape
            t = y.flatten(2).transpose(1, 2)
            if l.norm is not None:
                t = l.norm(t)
            t = F.leaky_relu(t, self.slope)
            x = t.transpose(1, 2).reshape(b, c, h, w)
        return self.head(t).squeeze(-1)


class FAE(nn.Module):
    def __init__(self, cfg, enc):
        super().__init__()
        d, g = cfg["encoder"]["dim"], cfg["encoder"]["grid"]
        self.encoder = ViTEncoder(enc)
        self.adapter = Adapter(d, cfg["adapter"])
        self.feature_decoder = FeatureDecoder(cfg["adapter"]["latentChannels"], d, g, cfg["featureDecoder"])
        self.pixel_decoder = PixelDecoder(d, g, cfg["pixelDecoder"])
        self.discriminator = PatchDiscriminator(cfg["pixelDecoder"]["channels"], cfg["discriminator"])


def hinge_d_loss(real, fake):
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pos_embed"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:  # norm scales
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))


def main():
    gen = torch.Generator().manual_seed(0)
    cfg, w = CONFIG, CONFIG["loss"]
    model = FAE(cfg, ENCODER)
    randomize(model, gen)
    model.encoder.requires_grad_(False)
    b, n, d, c = BATCH, cfg["encoder"]["grid"] ** 2, cfg["encoder"]["dim"], cfg["adapter"]["latentChannels"]
    s = cfg["encoder"]["grid"] * cfg["pixelDecoder"]["patchSize"]
    images = torch.rand(b, cfg["pixelDecoder"]["channels"], s, s, generator=gen) * 2 - 1
    eps_z = torch.randn(b, n, c, generator=gen)
    eps_f = torch.randn(b, n, d, generator=gen)
    u = torch.rand(b, generator=gen)

    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        out[f"param.{k}"] = v.clone()
    with torch.no_grad():
        feats = model.encoder(images)
    out.update({"input.images": images, "input.features": feats, "input.noise.latent": eps_z,
                "input.noise.features": eps_f, "input.noise.sigma": u})

    # ---- stage Ia ----
    ia_params = [(k, p) for k, p in model.named_parameters() if k.startswith(("adapter.", "feature_decoder."))]
    mean, logvar = model.adapter(feats)
    z = mean + torch.exp(0.5 * logvar) * eps_z
    decoded = model.feature_decoder(z)
    feature_mse = F.mse_loss(decoded, feats)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum() / b
    loss_ia = feature_mse + w["klWeight"] * kl
    grads = torch.autograd.grad(loss_ia, [p for _, p in ia_params])
    for key, v in dict(mean=mean, logvar=logvar, z=z, decoded=decoded, feature_mse=feature_mse, kl=kl, loss=loss_ia).items():
        out[f"output.ia.{key}"] = v.detach()
    for (k, _), g in zip(ia_params, grads):
        out[f"grad.ia.{k}"] = g
    with torch.no_grad():
        dm = model.feature_decoder(mean)
        out["output.ia_mode.decoded"] = dm
        out["output.ia_mode.loss"] = F.mse_loss(dm, feats) + w["klWeight"] * kl

    # ---- stage Ib (generator step) ----
    pd_params = [(k, p) for k, p in model.named_parameters() if k.startswith("pixel_decoder.")]
    last = model.pixel_decoder.output_proj.weight
    feats_ib = model.encoder(images)
    rec = model.pixel_decoder(feats_ib + cfg["featureNoise"]["sigma"] * eps_f)
    l1 = F.l1_loss(rec, images)
    mse = F.mse_loss(rec, images)
    perceptual = F.mse_loss(model.encoder(rec), feats_ib)
    rec_loss = w["l1Weight"] * l1 + w["mseWeight"] * mse + w["perceptualWeight"] * perceptual
    logits_fake = model.discriminator(rec)
    g_loss = -logits_fake.mean()
    rec_grads = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    gan_grads = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    adaptive = torch.clamp(torch.norm(rec_grads) / (torch.norm(gan_grads) + 1e-4), 0.0, 1e4).detach()
    disc_factor = 1.0
    gan_weight = adaptive * w["discriminatorWeight"] * disc_factor
    loss_ib = rec_loss + gan_weight * g_loss
    grads = torch.autograd.grad(loss_ib, [p for _, p in pd_params])
    for key, v in dict(features=feats_ib, reconstruction=rec, l1=l1, mse=mse, perceptual=perceptual, rec_loss=rec_loss,
                       logits_fake=logits_fake, g_loss=g_loss, rec_grad_norm=torch.norm(rec_grads),
                       gan_grad_norm=torch.norm(gan_grads), adaptive_weight=adaptive, gan_weight=gan_weight,
                       loss=loss_ib).items():
        out[f"output.ib.{key}"] = v.detach()
    for (k, _), g in zip(pd_params, grads):
        out[f"grad.ib.{k}"] = g
    with torch.no_grad():
        sigma = UNIFORM_MAX * u
        out["output.ib_uniform.reconstruction"] = model.pixel_decoder(feats + sigma[:, None, None] * eps_f)

    # ---- discriminator step ----
    d_params = [(k, p) for k, p in model.named_parameters() if k.startswith("discriminator.")]
    lr = model.discriminator(images)
    lf = model.discriminator(rec.detach())
    d_loss = disc_factor * hinge_d_loss(lr, lf)
    grads = torch.autograd.grad(d_loss, [p for _, p in d_params])
    for key, v in dict(logits_real=lr, logits_fake=lf, loss=d_loss).items():
        out[f"output.d.{key}"] = v.detach()
    for (k, _), g in zip(d_params, grads):
        out[f"grad.d.{k}"] = g

    # ---- image resizing for the DINOv2 wrapper (bicubic, align_corners=False) ----
    out["output.resize.bicubic_12"] = F.interpolate(images, size=(12, 12), mode="bicubic", align_corners=False)
    out["output.resize.bicubic_aa_12"] = F.interpolate(images, size=(12, 12), mode="bicubic", align_corners=False, antialias=True)
    out["output.resize.bicubic_20"] = F.interpolate(images, size=(20, 20), mode="bicubic", align_corners=False)

    meta = {"config": cfg, "encoder": ENCODER, "batch": BATCH, "uniform_max": UNIFORM_MAX,
            "param_order": list(model.state_dict().keys())}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "tiny.safetensors"
    save_file({k: v.contiguous().float() for k, v in out.items()}, str(path), metadata={"golden": json.dumps(meta)})
    print(f"{path}: {len(out)} tensors, {path.stat().st_size} bytes; lambda {adaptive.item():.4f}, "
          f"loss_ia {loss_ia.item():.4f}, loss_ib {loss_ib.item():.4f}, d_loss {d_loss.item():.4f}")


if __name__ == "__main__":
    main()
