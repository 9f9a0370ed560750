"""HookedTransformer (TL 3.x): loading matches HF, and every reported site fires."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from pe_hooks import Scheme, inspect
from pe_hooks.models import load_hf
from tests.tl3.conftest import TL3_FAMILIES, get_hooked

SCHEMES = {"tiny-gpt2": Scheme.LEARNED, "tiny-neox": Scheme.ROTARY, "tiny-llama": Scheme.ROTARY, "tiny-bloom": Scheme.ALIBI}


@pytest.mark.parametrize("name", TL3_FAMILIES)
def test_hooked_matches_hf(name: str) -> None:
    model = get_hooked(name)
    hf, tok = load_hf(name)
    ids = tok(["positions everywhere, in every plot"], return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        got = model(ids)  # type: ignore[operator]
        want = hf(ids).logits
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())


@pytest.mark.parametrize("name", TL3_FAMILIES)
def test_hooked_sites_fire(name: str) -> None:
    model = get_hooked(name)
    scheme = inspect(model)
    assert scheme.backend == "hooked"
    assert scheme.scheme is SCHEMES[name]
    names = scheme.firing_hooks()
    counts: Counter[str] = Counter()

    def make(n: str):  # type: ignore[no-untyped-def]
        def fn(t: torch.Tensor, hook: object) -> None:
            counts[n] += 1

        return fn

    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    model.run_with_hooks(ids, fwd_hooks=[(n, make(n)) for n in names])  # type: ignore[attr-defined]
    assert [n for n in names if counts[n] == 0] == []
    for template in scheme.never_fire:
        n = template.replace("*", "0")
        counts.clear()
        model.run_with_hooks(ids, fwd_hooks=[(n, make(n))])  # type: ignore[attr-defined]
        assert counts[n] == 0


def test_hooked_rotary_uses_rot_qk_and_no_cos_sin() -> None:
    s = inspect(get_hooked("tiny-llama"))
    assert s.layer_cos == () and len(s.rot_q) == 2 and s.rotary_dim == 16
    neox = inspect(get_hooked("tiny-neox"))
    assert len(neox.rot_q) == 2, "TL 3 NeoX rot_q/k fire (unlike the TL 4 bridge)"
    assert neox.rotary_dim == 8 and "resid_mid" not in neox.resid


def test_hooked_alibi_form_is_relative() -> None:
    from pe_hooks.sites import AlibiForm

    assert inspect(get_hooked("tiny-bloom")).alibi_form is AlibiForm.RELATIVE


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_hooked_honours_the_dtype(name: str) -> None:
    """``load_model(..., backend="hooked", dtype=...)`` builds the model in that dtype (it used to stay
    float32 silently), and its logits match the float32 model to bfloat16 precision."""
    from pe_hooks import load_model

    m16 = load_model(name, backend="hooked", dtype="bfloat16")
    m32 = get_hooked(name)
    assert {p.dtype for p in m16.parameters()} == {torch.bfloat16} and m16.cfg.dtype == torch.bfloat16  # type: ignore[attr-defined]
    ids = torch.randint(0, m32.cfg.d_vocab, (2, 12), generator=torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
    with torch.no_grad():
        a, b = m32(ids), m16(ids).float()  # type: ignore[operator]
    assert float((a - b).norm() / a.norm()) < 0.02
