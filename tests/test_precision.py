"""Model dtype: names and ``"auto"`` resolve as documented, and the interventions and the sweep run in
bfloat16 (what ``pe-hooks sweep`` uses by default where the CPU multiplies bfloat16 natively)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pe_hooks import ModelLoadError, apply_hooks, load_model, remove, sweep, zero
from pe_hooks.models.precision import DTYPE_NAMES, native_bfloat16, resolve_dtype
from pe_hooks.reports import sweep_markdown


def test_names_and_dtypes_resolve() -> None:
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(" BFloat16 ") is torch.bfloat16
    assert resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype(torch.float64) is torch.float64
    with pytest.raises(ModelLoadError, match="floating"):
        resolve_dtype(torch.int32)
    with pytest.raises(ModelLoadError, match="dtype='float32'"):
        resolve_dtype("fp32")
    with pytest.raises(ModelLoadError, match="auto"):
        resolve_dtype(32)  # type: ignore[arg-type]
    assert set(DTYPE_NAMES) == {"auto", "float32", "bfloat16", "float16"}


@pytest.mark.parametrize("flags", [(True, False), (False, True), (False, False)])
def test_auto_is_bfloat16_only_with_native_instructions(monkeypatch: pytest.MonkeyPatch, flags: tuple[bool, bool]) -> None:
    avx512_bf16, amx = flags
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    want = torch.bfloat16 if (avx512_bf16 or amx) else torch.float32
    assert resolve_dtype("auto", "cpu") is want
    assert resolve_dtype("auto", "meta") is torch.float32  # neither CPU nor CUDA: float32


def test_native_bfloat16_agrees_with_the_cpu_flags() -> None:
    """An independent reading of the same fact: the kernel's CPU flags."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        pytest.skip("no /proc/cpuinfo on this OS")
    flags = set(next(ln for ln in info.read_text().splitlines() if ln.startswith("flags")).split())
    assert native_bfloat16("cpu") == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_load_model_in_bfloat16_matches_float32_to_bfloat16_precision() -> None:
    m16 = load_model("tiny-llama", dtype="bfloat16")
    m32 = load_model("tiny-llama")
    assert {p.dtype for p in m16.parameters()} == {torch.bfloat16}
    ids = torch.randint(0, m32.cfg.d_vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = m32(ids), m16(ids).float()
    assert float((a - b).norm() / a.norm()) < 0.02
    with pytest.raises(ModelLoadError, match="dtype='float32'"):
        load_model("tiny-llama", dtype="half-ish")  # type: ignore[arg-type]


def _scores(model: Any, hooks: list, ids: torch.Tensor) -> torch.Tensor:
    """The last layer's attention scores (pre-softmax), float32, under ``hooks``."""
    name, got = f"blocks.{model.cfg.n_layers - 1}.attn.hook_attn_scores", []
    with apply_hooks(model, [*hooks, (name, lambda t, hook: got.append(t.float()))]), torch.no_grad():
        model(ids)
    return got[0]


@pytest.mark.parametrize("verb", ["zero", "remove"])
def test_rotary_interventions_in_bfloat16_land_where_float32_does(verb: str) -> None:
    """The hooks are dtype-safe: in bfloat16 they move the attention scores where the float32 hooks
    (tied to HF with ``inv_freq`` zeroed / rotation rebuilt by hand in test_rotary.py) move them,
    within bfloat16's own error, which is far smaller than the move."""
    m16, m32 = load_model("tiny-llama", dtype=torch.bfloat16), load_model("tiny-llama")
    ids = torch.randint(0, m32.cfg.d_vocab, (2, 16), generator=torch.Generator().manual_seed(1))
    verb_fn = zero if verb == "zero" else remove
    plain32, plain16 = _scores(m32, [], ids), _scores(m16, [], ids)
    want, got = _scores(m32, verb_fn(m32), ids), _scores(m16, verb_fn(m16), ids)
    finite = torch.ones(16, 16, dtype=torch.bool).tril().expand_as(want)  # the causal mask's visible scores
    bf16_err = float((plain16 - plain32)[finite].abs().max())  # the dtype's own error, no hooks
    err = float((got - want)[finite].abs().max())
    moved = float((want - plain32)[finite].abs().max())
    assert err <= 2 * bf16_err, (err, bf16_err)
    assert moved > 10 * err, (moved, err)  # the check could fail: the hooks move the scores much more


def test_sweep_records_the_model_dtype() -> None:
    model = load_model("tiny-llama", dtype="bfloat16")
    res = sweep(model, None, ["baseline", "zero", "erase"], n_seqs=16, n_fit=8, nonlinear=("knn_cosine",),
                nonlinear_seqs=8, sample_seqs=16, progress=False)
    assert res.meta["dtype"] == "bfloat16"
    assert "Model dtype: bfloat16." in sweep_markdown(res)
    assert set(res.df.intervention) == {"baseline", "zero", "erase"}
    assert res.df.value.notna().any()


def test_auto_on_cuda_counts_native_bfloat16_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU that only emulates bfloat16 (pre-Ampere; torch reports it unless told not to) gets float32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not native_bfloat16("cuda") and resolve_dtype("auto", "cuda") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert native_bfloat16("cuda") and resolve_dtype("auto", "cuda") is torch.bfloat16


def test_a_built_model_in_another_dtype_is_not_silently_returned() -> None:
    m32 = load_model("tiny-llama")
    assert load_model(m32) is m32 and load_model(m32, dtype="float32") is m32
    with pytest.raises(ModelLoadError, match=r"model\.to\(torch\.bfloat16\)"):
        load_model(m32, dtype="bfloat16")
    m16 = load_model("tiny-llama", dtype="bfloat16")
    assert load_model(m16) is m16 and load_model(m16, dtype=torch.bfloat16) is m16
    want = m16 if resolve_dtype("auto") is torch.bfloat16 else m32
    assert load_model(want, dtype="auto") is want
    # the fix the message names works
    assert load_model(load_model("tiny-llama").to(torch.bfloat16), dtype="bfloat16") is not None


def test_asking_a_built_model_for_float32_explicitly_is_checked_too() -> None:
    """``dtype=torch.float32`` given on purpose is a request like any other: a bfloat16 model is not
    returned as if it were float32 (the default used to double as "not given")."""
    m16 = load_model("tiny-llama", dtype="bfloat16")
    with pytest.raises(ModelLoadError, match=r"model\.to\(torch\.float32\)"):
        load_model(m16, dtype=torch.float32)
    with pytest.raises(ModelLoadError, match=r"model\.to\(torch\.float32\)"):
        load_model(m16, dtype="float32")
    assert load_model(m16) is m16  # not given: the model's own dtype
    assert next(load_model("tiny-llama").parameters()).dtype is torch.float32  # by name: float32 by default
