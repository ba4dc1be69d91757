"""Write golden/data/dinov2/*: PyTorch references for models/dinov2 (HF transformers 5.17 Dinov2Model
and Dinov2WithRegistersModel), read by test/models/dinov2.test.ts.

Run from the repository root:  .venv/bin/python golden/dinov2_golden.py

Models (every parameter is randomized, including layer scales, CLS/mask/register tokens, LayerNorm
affines and the position embeddings, so no default init hides a bug):

  tiny          Dinov2Model, hidden 32, 2 layers, 2 heads, trained at 42 px (3x3 grid); runs at 56x70
                (4x5 grid, upsampled, non-square), 42x42 (no interpolation), 45x44 (cropped borders),
                and 28x42 from [0,1] images with in-graph ImageNet normalization and a mask.
  tiny_reg      Dinov2WithRegistersModel, hidden 32, 2 layers, 2 heads, 4 registers, trained at 56 px
                (4x4 grid); runs at 42x70 (3x5: down rows, up columns, antialias), 56x56, 98x28 masked.
  tiny_swiglu   Dinov2Model as ViT-g (SwiGLU FFN), hidden 40 (SwiGLU hidden 112, rounded up to a multiple
                of 8), 2 heads, use_mask_token false, layer_norm_eps 1e-5, trained at 70 px (5x5); runs at
                42x42 and 70x70.
  base, base_reg  ViT-B width (hidden 768, 12 heads, MLP 3072) but only 2 LAYERS, trained at 224 px
                (16x16 grid), run at 70x56 (5x4). Dinov2Model and Dinov2WithRegistersModel (4 registers).
                Their weights are not stored (28 MB each): they come from a counter hash that
                test/models/dinov2.test.ts recomputes bit-exactly (see hash_weights below).

Files:
  <model>.safetensors      tiny models: the model.safetensors HF's save_pretrained writes (HF keys, as is)
  <model>.config.json      the config.json HF's save_pretrained writes (all models)
  <model>.io.safetensors   run<i>.{pixel_values | images, bool_masked_pos, last_hidden_state,
                           pooler_output}; hashed models also check.<param> = the first 16 values of
                           each parameter. Metadata `golden` (JSON): {model, runs: [{name, batch, height,
                           width, input, masked}], weights: "file" | {"hash": {seed, params: {name:
                           [offset, scale]}}}, param_order: HF named_parameters order}.
  presets.json             the published configs (facebook/dinov2-{small,base,large,giant}, and
                           -with-registers-*): {name: {config: HF config dict, params: [[key, shape], ...]
                           in state_dict order, num_params}}, from HF models built on the meta device.
  interp.safetensors       F.interpolate(bicubic, align_corners=False) references: <case>.matrix = the
                           [outH*outW, inH*inW] interpolation matrix (PyTorch on one-hot basis grids, in
                           float64, stored as f32), <case>.input [2, inH, inW] f32, <case>.output the f32
                           F.interpolate of it. Metadata `golden`: {cases: [{name, in, out, antialias,
                           scale_factor}]}.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

OUT = Path(__file__).resolve().parent / "data" / "dinov2"
MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


# --------------------------------------------------------------------------------------------
# Parameter randomization
# --------------------------------------------------------------------------------------------


def kind_of(name: str) -> str:
    if name.endswith("lambda1"):
        return "layerscale"
    if ("norm" in name.split(".")[-2]) and name.endswith(".weight"):  # norm1, norm2, layernorm
        return "norm_weight"
    if name.endswith(".bias"):
        return "bias"
    if name.startswith("embeddings.") and name.split(".")[1] in ("cls_token", "mask_token", "register_tokens", "position_embeddings"):
        return "token"
    return "matrix"


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            k = kind_of(name)
            r = torch.randn(p.shape, generator=gen)
            if k == "layerscale":
                v = 0.3 + torch.rand(p.shape, generator=gen)  # U(0.3, 1.3)
            elif k == "norm_weight":
                v = 1 + 0.2 * r
            elif k == "bias":
                v = 0.2 * r
            elif k == "token":
                v = r
            else:
                fan_in = int(np.prod(p.shape[1:]))
                v = r / fan_in**0.5
            p.copy_(v)


def hash_uniform(n: int, stream: int, seed: int) -> np.ndarray:
    """u in [0, 1) with 24 bits: lowbias32 hash of (index, stream, seed); mirrored in the TS test."""
    m = np.uint64(0xFFFFFFFF)
    i = np.arange(n, dtype=np.uint64)
    x = (i * np.uint64(0x9E3779B1) + np.uint64((stream + 1) * 0x85EBCA77 % 2**32) + np.uint64(seed)) & m
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & m
    x ^= x >> np.uint64(16)
    return (x >> np.uint64(8)).astype(np.float64) / 2.0**24


def hash_weights(model: torch.nn.Module, seed: int) -> dict[str, list[float]]:
    """param k (state_dict order) = float32(offset + scale * (2u - 1)), u = hash_uniform(numel, k, seed).
    Dyadic scales keep the f64 arithmetic identical in numpy and JS; f64 → f32 rounds to nearest even."""
    spec: dict[str, list[float]] = {}
    with torch.no_grad():
        for k, (name, p) in enumerate(model.named_parameters()):
            kind = kind_of(name)
            if kind == "layerscale":
                off, sc = 0.75, 0.5
            elif kind == "norm_weight":
                off, sc = 1.0, 0.25
            elif kind == "bias":
                off, sc = 0.0, 0.25
            elif kind == "token":
                off, sc = 0.0, 1.0
            else:
                fan_in = int(np.prod(p.shape[1:]))
                off, sc = 0.0, 2.0 ** -round(np.log2(np.sqrt(fan_in / 3)))  # ~unit output variance
            u = hash_uniform(p.numel(), k, seed)
            v = (off + sc * (2 * u - 1)).astype(np.float32).reshape(tuple(p.shape))
            p.copy_(torch.from_numpy(v))
            spec[name] = [off, sc]
    return spec


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def build(kind: str, **cfg):
    if kind == "dinov2":
        return Dinov2Model(Dinov2Config(**cfg)).eval()
    return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**cfg)).eval()


def save_hf(model, name: str, with_weights: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        shutil.copy(Path(d) / "config.json", OUT / f"{name}.config.json")
        if with_weights:
            shutil.copy(Path(d) / "model.safetensors", OUT / f"{name}.safetensors")


def run_cases(model, name: str, runs: list[dict], gen: torch.Generator, weights, extra: dict | None = None) -> None:
    tensors: dict[str, torch.Tensor] = dict(extra or {})
    for r in runs:
        b, h, w = r["batch"], r["height"], r["width"]
        key = r["name"]
        if r["input"] == "images":
            images = torch.rand(b, 3, h, w, generator=gen)
            pixel = (images - MEAN) / STD
            tensors[f"{key}.images"] = images
        else:
            pixel = torch.randn(b, 3, h, w, generator=gen)
            tensors[f"{key}.pixel_values"] = pixel
        mask = None
        if r["masked"]:
            n = (h // model.config.patch_size) * (w // model.config.patch_size)
            mask = torch.rand(b, n, generator=gen) < 0.4
            tensors[f"{key}.bool_masked_pos"] = mask
        with torch.no_grad():
            o = model(pixel_values=pixel, bool_masked_pos=mask)
        tensors[f"{key}.last_hidden_state"] = o.last_hidden_state.clone()
        tensors[f"{key}.pooler_output"] = o.pooler_output.clone()
    meta = {"model": name, "runs": runs, "weights": weights, "param_order": [n for n, _ in model.named_parameters()]}
    save_file(tensors, OUT / f"{name}.io.safetensors", metadata={"golden": json.dumps(meta)})


def run(name: str, batch: int, height: int, width: int, input: str = "pixel_values", masked: bool = False) -> dict:
    return {"name": name, "batch": batch, "height": height, "width": width, "input": input, "masked": masked}


def tiny_models(gen: torch.Generator) -> None:
    m = build("dinov2", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=42, patch_size=14, layer_norm_eps=1e-6)
    randomize(m, gen)
    save_hf(m, "tiny", True)
    run_cases(m, "tiny", [
        run("run0", 2, 56, 70),
        run("run1", 1, 42, 42),
        run("run2", 2, 45, 44),
        run("run3", 2, 28, 42, input="images", masked=True),
    ], gen, "file")

    m = build("dinov2_with_registers", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_register_tokens=4,
              image_size=56, patch_size=14, layer_norm_eps=1e-6)
    randomize(m, gen)
    save_hf(m, "tiny_reg", True)
    run_cases(m, "tiny_reg", [run("run0", 2, 42, 70), run("run1", 1, 56, 56), run("run2", 1, 98, 28, masked=True)], gen, "file")

    m = build("dinov2", hidden_size=40, num_hidden_layers=2, num_attention_heads=2, image_size=70, patch_size=14,
              use_swiglu_ffn=True, use_mask_token=False, layer_norm_eps=1e-5)
    assert m.encoder.layer[0].mlp.weights_out.in_features == 112
    randomize(m, gen)
    save_hf(m, "tiny_swiglu", True)
    run_cases(m, "tiny_swiglu", [run("run0", 2, 42, 42), run("run1", 1, 70, 70)], gen, "file")


def base_models(gen: torch.Generator) -> None:
    for name, kind, extra in [("base", "dinov2", {}), ("base_reg", "dinov2_with_registers", {"num_register_tokens": 4})]:
        m = build(kind, hidden_size=768, num_hidden_layers=2, num_attention_heads=12, image_size=224, patch_size=14,
                  layer_norm_eps=1e-6, **extra)
        seed = 1234 if name == "base" else 5678
        spec = hash_weights(m, seed)
        save_hf(m, name, False)
        check = {f"check.{n}": p.detach().reshape(-1)[:16].clone() for n, p in m.named_parameters()}
        runs = [run("run0", 2 if name == "base" else 1, 70, 56)]
        run_cases(m, name, runs, gen, {"hash": {"seed": seed, "params": spec}}, check)


# --------------------------------------------------------------------------------------------
# Interpolation references
# --------------------------------------------------------------------------------------------


def interp_cases(gen: torch.Generator) -> None:
    cases = []
    tensors: dict[str, torch.Tensor] = {}

    def add(name, hw_in, hw_out, aa, scale_factor=None):
        h, w = hw_in
        oh, ow = hw_out
        kw = dict(mode="bicubic", align_corners=False, antialias=aa)
        if scale_factor is None:
            kw["size"] = (oh, ow)
        else:
            kw["scale_factor"] = scale_factor
        basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
        mat = F.interpolate(basis, **kw)
        assert mat.shape[-2:] == (oh, ow), (name, mat.shape)
        tensors[f"{name}.matrix"] = mat.reshape(h * w, oh * ow).T.contiguous().float()
        x = torch.randn(1, 2, h, w, generator=gen)
        tensors[f"{name}.input"] = x[0]
        tensors[f"{name}.output"] = F.interpolate(x, **kw)[0].contiguous()
        cases.append({"name": name, "in": [h, w], "out": [oh, ow], "antialias": aa,
                      "scale_factor": list(scale_factor) if scale_factor else None})

    for aa in (False, True):
        s = "aa" if aa else "noaa"
        add(f"up_3x3_5x5_{s}", (3, 3), (5, 5), aa)
        add(f"down_7x7_4x4_{s}", (7, 7), (4, 4), aa)
        add(f"mixed_4x6_7x3_{s}", (4, 6), (7, 3), aa)
        add(f"down_16x16_5x4_{s}", (16, 16), (5, 4), aa)
        add(f"same_4x4_{s}", (4, 4), (4, 4), aa)
        add(f"to1_10x10_1x1_{s}", (10, 10), (1, 1), aa)
        add(f"from1_1x2_3x5_{s}", (1, 2), (3, 5), aa)
        # DINOv2's 37x37 table (518 px) along one axis: to 224, 448, 896 px and from 224 px.
        add(f"row_37_16_{s}", (1, 37), (1, 16), aa)
        add(f"row_37_32_{s}", (1, 37), (1, 32), aa)
        add(f"row_37_64_{s}", (1, 37), (1, 64), aa)
        add(f"row_16_37_{s}", (1, 16), (1, 37), aa)
    # facebookresearch/dinov2 style: scale_factor = (out + 0.1) / in instead of a size.
    add("sf_37_16_noaa", (1, 37), (1, 16), False, scale_factor=(1.0, (16 + 0.1) / 37))
    add("sf_5x7_3x9_noaa", (5, 7), (3, 9), False, scale_factor=((3 + 0.1) / 5, (9 + 0.1) / 7))
    save_file(tensors, OUT / "interp.safetensors", metadata={"golden": json.dumps({"cases": cases})})


PUBLISHED = {
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "giant": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True),
}


def presets() -> None:
    out = {}
    for size, cfg in PUBLISHED.items():
        common = dict(image_size=518, patch_size=14, mlp_ratio=4, layer_norm_eps=1e-6, layerscale_value=1.0, **cfg)
        for name, kind, extra in [(f"dinov2-{size}", "dinov2", {}),
                                  (f"dinov2-with-registers-{size}", "dinov2_with_registers", {"num_register_tokens": 4})]:
            with torch.device("meta"):
                m = build(kind, **common, **extra)
            params = [[k, list(p.shape)] for k, p in m.state_dict().items()]
            out[name] = {"config": json.loads(m.config.to_json_string()), "params": params,
                         "num_params": sum(p.numel() for p in m.parameters())}
    (OUT / "presets.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        f.unlink()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20251)
    tiny_models(gen)
    base_models(gen)
    interp_cases(gen)
    presets()
    for f in OUT.iterdir():
        f.chmod(0o644)
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1e6:.2f} MB, to {OUT}")


if __name__ == "__main__":
    main()
