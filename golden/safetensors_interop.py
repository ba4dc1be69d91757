"""Write golden/data/safetensors_interop.safetensors: a small file saved by PyTorch's safetensors,
read by test/runtime/safetensors.test.ts to check that Kiln decodes every dtype exactly.

Run from the repository root:  .venv/bin/python golden/safetensors_interop.py
The test computes the expected values independently, so keep the two in step.
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "data" / "safetensors_interop.safetensors"

inf = float("inf")
nan = float("nan")


def tensors() -> dict[str, torch.Tensor]:
    return {
        # float32: arange-based, plus special values (min subnormal, min normal, max, ±0, ±inf, nan, 1/3).
        "f32_arange": (torch.arange(12, dtype=torch.float32) * 0.25 - 1.0).reshape(3, 4),
        "f32_special": torch.tensor(
            [0.0, -0.0, inf, -inf, nan, 2.0**-149, 2.0**-126, 3.4028234663852886e38, 1.0 / 3.0],
            dtype=torch.float32,
        ),
        # float16: arange-based, plus specials (max 65504, min subnormal 2^-24, largest subnormal,
        # min normal 2^-14, ±0, ±inf, nan, 1/3 rounded to 0x3555).
        "f16_arange": (torch.arange(-8, 8, dtype=torch.float32) * 0.125).to(torch.float16).reshape(2, 8),
        "f16_special": torch.tensor(
            [0.0, -0.0, inf, -inf, nan, 65504.0, -65504.0, 2.0**-24, 1023 * 2.0**-24, 2.0**-14, 1.0 / 3.0],
            dtype=torch.float16,
        ),
        # bfloat16: arange-based, plus specials (max, min subnormal 2^-133, min normal 2^-126,
        # ±0, ±inf, nan, 1/3 rounded to 0x3eab).
        "bf16_arange": (torch.arange(24, dtype=torch.float32) - 12.0).to(torch.bfloat16).reshape(2, 3, 4),
        "bf16_special": torch.tensor(
            [0.0, -0.0, inf, -inf, nan, 3.3895313892515355e38, 2.0**-133, 2.0**-126, 1.0 / 3.0],
            dtype=torch.bfloat16,
        ),
        "i32_arange": torch.arange(-5, 5, dtype=torch.int32).reshape(2, 5),
        "i32_extremes": torch.tensor([-(2**31), 2**31 - 1, 0, -1], dtype=torch.int32),
        "i64_values": torch.tensor([[-3, 0, 7], [2**31 - 1, -(2**31), 42]], dtype=torch.int64),
        "bool_mask": torch.tensor([[True, False, True], [True, False, False]]),
        "f32_scalar": torch.tensor(3.5, dtype=torch.float32),
        "f32_empty": torch.zeros(0, 3, dtype=torch.float32),
    }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors(), str(OUT), metadata={"format": "pt", "source": "kiln golden/safetensors_interop.py"})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
