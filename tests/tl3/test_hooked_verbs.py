"""The verbs on TL 3.x HookedTransformer vs the same hand-edited HF references (1e-5 on logits).

TL 3.x has no cos/sin hooks (rotary goes through ``attn.hook_rot_q/k``, the ``rot_qk`` site), no
position-id hook (learned positions are recovered from W_pos rows), and ALiBi as
``slope * (j - i)`` inside the scores.
"""

from __future__ import annotations

import pytest
import torch

from pe_hooks import SchemeError, apply_hooks, remove, replace, reverse, shift, shuffle, zero
from pe_hooks.models import load_hf
from tests.tl3.conftest import get_hooked

ATOL = 1e-5
IDS = torch.tensor([[5, 40, 52, 61, 77, 83, 90, 101, 7, 9], [6, 41, 50, 60, 70, 80, 91, 100, 8, 3]])


def _run(name: str, hooks: list) -> torch.Tensor:
    model = get_hooked(name)
    with apply_hooks(model, hooks), torch.no_grad():
        return model(IDS)  # type: ignore[operator]


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    diff = float((got - want).abs().max())
    assert diff <= ATOL, f"max |diff| {diff:.2e}"


def _rotary_modules(hf: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in hf.modules() if hasattr(m, "inv_freq")]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
def test_rotary_zero_via_rot_qk(name: str) -> None:
    ref, _ = load_hf(name)
    with torch.no_grad():
        base = ref(IDS).logits
        for m in _rotary_modules(ref):
            m.inv_freq.zero_()
        want = ref(IDS).logits
    got = _run(name, zero(get_hooked(name)))
    _close(got, want)
    assert float((got - base).abs().max()) > 1e-3


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
@pytest.mark.parametrize("pmap,fn", [(shift(5), lambda t: t + 5), (reverse(16), lambda t: 15 - t)], ids=["shift", "reverse"])
def test_rotary_replace(name: str, pmap, fn) -> None:  # type: ignore[no-untyped-def]
    ref, _ = load_hf(name)
    pos = torch.arange(IDS.shape[1]).unsqueeze(0).expand_as(IDS)
    with torch.no_grad():
        want = ref(IDS, position_ids=fn(pos)).logits
    _close(_run(name, replace(get_hooked(name), pmap)), want)


@pytest.mark.parametrize("pmap,fn", [(shift(3), lambda t: t + 3), (shuffle(32, seed=2), lambda t: shuffle(32, seed=2)(t).long())], ids=["shift", "shuffle"])
def test_learned_verbs(pmap, fn) -> None:  # type: ignore[no-untyped-def]
    ref, _ = load_hf("tiny-gpt2")
    pos = torch.arange(IDS.shape[1]).unsqueeze(0).expand_as(IDS)
    with torch.no_grad():
        want = ref(IDS, position_ids=fn(pos)).logits
    _close(_run("tiny-gpt2", replace(get_hooked("tiny-gpt2"), pmap)), want)
    ref2, _ = load_hf("tiny-gpt2")
    with torch.no_grad():
        ref2.transformer.wpe.weight.zero_()
        want_zero = ref2(IDS).logits
    _close(_run("tiny-gpt2", zero(get_hooked("tiny-gpt2"))), want_zero)
    ref3, _ = load_hf("tiny-gpt2")
    with torch.no_grad():
        w = ref3.transformer.wpe.weight
        w[:] = w[: IDS.shape[1]].mean(0)
        want_remove = ref3(IDS).logits
    _close(_run("tiny-gpt2", remove(get_hooked("tiny-gpt2"))), want_remove)


def test_alibi_zero_and_replace() -> None:
    from tests.test_alibi import _key_alibi

    def patched(fn):  # type: ignore[no-untyped-def]
        ref, _ = load_hf("tiny-bloom")
        ref.transformer.build_alibi_tensor = fn  # type: ignore[method-assign]
        with torch.no_grad():
            return ref(IDS, attention_mask=torch.ones_like(IDS)).logits

    want = patched(lambda mask, h, dtype: torch.zeros(mask.shape[0] * h, 1, mask.shape[1], dtype=dtype))
    _close(_run("tiny-bloom", zero(get_hooked("tiny-bloom"))), want)
    want_shuf = patched(lambda mask, h, dtype: _key_alibi(mask, h, lambda t: shuffle(32, seed=0)(t.long())).to(dtype))
    _close(_run("tiny-bloom", replace(get_hooked("tiny-bloom"), shuffle(32, seed=0))), want_shuf)


def test_cos_sin_site_is_a_clear_error_on_tl3() -> None:
    with pytest.raises(SchemeError, match="site='rot_qk'"):
        zero(get_hooked("tiny-llama"), site="rotary")
