"""Which floating dtype a model runs in: a name, a ``torch.dtype``, or ``"auto"``.

``"auto"`` picks bfloat16 where the hardware multiplies bfloat16 matrices natively and float32
elsewhere:

- CPU: AVX512-BF16 or AMX (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later).
  On SmolLM2-135M with 2 cores and AMX a forward pass is 2-3x faster than in float32 (measured
  here); without these instructions bfloat16 matrix products fall back to slower paths, so ``auto``
  keeps float32 there.
- CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).
- anything else (MPS): float32.

bfloat16 keeps float32's exponent range with an 8-bit mantissa, so activations differ from float32
by ~1% (relative norm of the residual stream on SmolLM2) -- far below what moves a position probe:
``benchmarks/main_job.py`` compares every cell of the main job's table in both dtypes. The library
default stays float32 (``load_model``): the reference tests compare interventions to an edited
Hugging Face model at 1e-5, which only float32 can meet.
"""

from __future__ import annotations

from typing import Literal

import torch

from pe_hooks.core.errors import ModelLoadError

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
DTYPE_NAMES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
_BY_NAME = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def native_bfloat16(device: str | torch.device = "cpu") -> bool:
    """Does ``device`` multiply bfloat16 matrices in hardware (so bfloat16 is faster than float32)?"""
    dev = torch.device(device)
    if dev.type == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, present since torch 2.1/2.3
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:  # torch >= 2.3 also reports emulated bfloat16 unless told not to
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:
            return bool(torch.cuda.is_bf16_supported())
    return False


def resolve_dtype(dtype: torch.dtype | str, device: str | torch.device = "cpu") -> torch.dtype:
    """``dtype`` as a floating ``torch.dtype``: a ``torch.dtype`` is checked and returned, a name in
    ``DTYPE_NAMES`` is looked up, ``"auto"`` is bfloat16 where ``native_bfloat16(device)``, else
    float32."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ModelLoadError(f"dtype must be a floating dtype such as torch.float32, got {dtype}; "
                                 f"or one of {', '.join(DTYPE_NAMES)}")
        return dtype
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")
        if name == "auto":
            return torch.bfloat16 if native_bfloat16(device) else torch.float32
        if name in _BY_NAME:
            return _BY_NAME[name]
    raise ModelLoadError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_NAMES)} (or a floating torch.dtype); "
                         "use dtype='float32' (the default) or 'auto'")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")
