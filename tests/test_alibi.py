"""ALiBi verbs on tiny-bloom vs HF BLOOM with its ALiBi tensor rebuilt by hand.

Reference edits patch ``BloomModel.build_alibi_tensor`` (all layers) or one block's
``self_attention`` call (one layer). Tolerance 1e-5 absolute on logits.
"""

from __future__ import annotations

import pytest
import torch
import transformers.models.bloom.modeling_bloom as mb

from pe_hooks import SchemeError, apply_hooks, remove, replace, reverse, shift, shuffle, zero
from pe_hooks.interventions.alibi import alibi_slopes
from pe_hooks.models import load_hf
from tests.conftest import get_model

ATOL = 1e-5
NAME = "tiny-bloom"


def _ids() -> torch.Tensor:
    return torch.tensor([[5, 40, 52, 61, 77, 83, 90, 101, 7, 9], [6, 41, 50, 60, 70, 80, 91, 100, 8, 3]])


def _patched_ref(alibi_fn) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """HF BLOOM whose ALiBi tensor comes from ``alibi_fn``. HF only calls ``build_alibi_tensor``
    when an attention mask is given, so references are run with ``_ref_logits`` (explicit mask)."""
    ref, _ = load_hf(NAME)
    ref.transformer.build_alibi_tensor = alibi_fn  # type: ignore[method-assign]
    return ref


def _ref_logits(ref: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref(ids, attention_mask=torch.ones_like(ids)).logits  # type: ignore[operator]


def _key_alibi(mask: torch.Tensor, n_heads: int, f=lambda t: t, heads=None) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """m_h * f(t_k), shaped like HF's alibi: [b * h, 1, k]."""
    pos = ((mask.cumsum(-1) - 1) * mask).float()
    slopes = alibi_slopes(n_heads)
    if heads is not None:
        keep = torch.ones(n_heads, dtype=torch.bool)
        keep[heads] = False
        orig = slopes[:, None, None] * pos[None]  # [h, b, k]
        new = slopes[:, None, None] * f(pos)[None]
        out = torch.where(keep[:, None, None], orig, new)
    else:
        out = slopes[:, None, None] * f(pos)[None]
    return out.permute(1, 0, 2).reshape(-1, 1, mask.shape[-1])


def _bridge(hooks: list, ids: torch.Tensor, **kw: object) -> torch.Tensor:
    model = get_model(NAME)
    with apply_hooks(model, hooks), torch.no_grad():
        return model(ids, **kw)  # type: ignore[operator]


def _close(got: torch.Tensor, want: torch.Tensor, atol: float = ATOL) -> None:
    diff = float((got - want).abs().max())
    assert diff <= atol, f"max |diff| {diff:.2e} > {atol:.0e}"


def test_slopes_match_hf() -> None:
    for n in (1, 2, 3, 4, 6, 8, 12, 16, 32):
        alibi = mb.build_alibi_tensor(torch.ones(1, 2), n, torch.float32)  # [n, 1, 2]
        assert torch.allclose(alibi[:, 0, 1], alibi_slopes(n), atol=1e-7), n


def test_baseline_agrees() -> None:
    ref, _ = load_hf(NAME)
    with torch.no_grad():
        _close(_bridge([], _ids()), ref(_ids()).logits)


def test_zero_equals_alibi_disabled() -> None:
    ref = _patched_ref(lambda mask, h, dtype: torch.zeros(mask.shape[0] * h, 1, mask.shape[1], dtype=dtype))
    want = _ref_logits(ref, _ids())
    base = _ref_logits(load_hf(NAME)[0], _ids())
    got = _bridge(zero(get_model(NAME)), _ids())
    _close(got, want)
    assert float((got - base).abs().max()) > 1e-3


def test_remove_is_exactly_zero_for_alibi() -> None:
    """A per-query constant bias is softmax-invariant, so mean-ablation equals zero (documented)."""
    model = get_model(NAME)
    _close(_bridge(remove(model), _ids()), _bridge(zero(model), _ids()))


@pytest.mark.parametrize(
    "pmap,f",
    [(shift(4), lambda t: t + 4), (reverse(16), lambda t: 15 - t), (shuffle(32, seed=0), lambda t: shuffle(32, seed=0)(t.long()))],
    ids=["shift", "reverse", "shuffle"],
)
def test_replace_equals_hand_built_alibi(pmap, f) -> None:  # type: ignore[no-untyped-def]
    ref = _patched_ref(lambda mask, h, dtype: _key_alibi(mask, h, f).to(dtype))
    want = _ref_logits(ref, _ids())
    _close(_bridge(replace(get_model(NAME), pmap), _ids()), want)


def test_head_subset() -> None:
    ref = _patched_ref(lambda mask, h, dtype: _key_alibi(mask, h, lambda t: t * 0, heads=[1, 3]).to(dtype))
    want = _ref_logits(ref, _ids())
    _close(_bridge(zero(get_model(NAME), heads=[1, 3]), _ids()), want)


def test_layer_subset() -> None:
    ref, _ = load_hf(NAME)
    attn = ref.transformer.h[1].self_attention
    orig = attn.forward

    def patched(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["alibi"] = torch.zeros_like(kwargs["alibi"])
        return orig(*args, **kwargs)

    attn.forward = patched  # type: ignore[method-assign]
    with torch.no_grad():
        want = ref(_ids()).logits
    _close(_bridge(zero(get_model(NAME), layers=[1]), _ids()), want)


def test_left_padding_uses_real_positions() -> None:
    model = get_model(NAME)
    seq = _ids()[:1, :7]
    padded = torch.cat([torch.full((1, 3), 3), seq], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 7)], 1).long()
    hooks = replace(model, shuffle(32, seed=0))
    _close(_bridge(hooks, padded, attention_mask=mask)[:, 3:], _bridge(hooks, seq))


@pytest.mark.parametrize("verb", ["zero", "shift", "shuffle"])
def test_cached_generation_equals_full_forward(verb: str) -> None:
    model = get_model(NAME)
    hooks = {"zero": zero(model), "shift": replace(model, shift(5)), "shuffle": replace(model, shuffle(64, seed=1))}[verb]
    prompt = _ids()[:1, :6]
    with hooks.applied(model), torch.no_grad():
        out = model.generate(prompt, max_new_tokens=5, do_sample=False, verbose=False,  # type: ignore[attr-defined]
                             use_past_kv_cache=True, output_logits=True, stop_at_eos=False)
        full = model(out.sequences)  # type: ignore[operator]
    _close(torch.stack(out.logits, 1), full[:, prompt.shape[1] - 1 : -1])


def test_errors() -> None:
    with pytest.raises(SchemeError, match="read-only.*site='pos_embed'"):
        zero(get_model("tiny-bert"), site="alibi")
    with pytest.raises(SchemeError, match="site='rotary'"):
        zero(get_model("tiny-llama"), site="alibi")
    with pytest.raises(SchemeError, match="not a vector"):
        from pe_hooks import project_out

        project_out(get_model(NAME), torch.zeros(1, 64), site="alibi")
    with pytest.raises(SchemeError, match="exempt_first"):
        zero(get_model(NAME), exempt_first=True)
    with pytest.raises(IndexError, match="heads"):
        zero(get_model(NAME), heads=[7])
