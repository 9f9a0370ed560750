"""Rotary interventions vs independent HF references edited by hand.

References: a separate HF model (``load_hf``) with ``inv_freq`` zeroed or masked per band, run with
hand-edited ``position_ids``, with its rotary module patched to return mean tables, or with chosen
layers' / heads' rotation rebuilt by hand. The reference runs eager attention, as the bridge does
(its default SDPA kernel alone differs from eager by 5e-5 on SmolLM2's logits). Tolerance: 1e-5
absolute on logits (float32) in every comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import transformers.models.llama.modeling_llama as modeling_llama

from pe_hooks import (
    SchemeError,
    apply_hooks,
    constant,
    frequency_bands,
    project_out,
    remove,
    replace,
    reverse,
    scale,
    shift,
    shuffle,
    zero,
)
from pe_hooks.data import positions_from_mask
from pe_hooks.models import load_hf
from pe_hooks.sites import rotary_frequencies
from pe_hooks.sites.rotary_positions import decode_positions
from tests.conftest import get_model

ATOL = 1e-5
TINY = ["tiny-llama", "tiny-neox"]  # tiny-neox: partial rotary (rotary_dim < head_dim)
ALL = [*TINY, "smollm2-135m"]
# SmolLM2 in the fast suite for the core checks; its other parametrizations run with `-m slow`
# (2x16 tokens, but 30 layers and ~2 s per forward on a shared 2-core machine)
ALL_SLOW = [*TINY, pytest.param("smollm2-135m", marks=pytest.mark.slow)]
TEXT = "Rotary positions hide in every attention head of the model, and we want them out of there now."


def _ref(name: str) -> tuple[Any, Any]:
    """A fresh, independent HF model (eager attention) and its tokenizer."""
    ref, tok = load_hf(name)
    ref.set_attn_implementation("eager")
    return ref, tok


def _rotary_modules(hf: torch.nn.Module) -> list[torch.nn.Module]:
    mods = [m for m in hf.modules() if hasattr(m, "inv_freq")]
    assert mods, "no rotary module found in the reference"
    return mods


def _attention_modules(hf: torch.nn.Module) -> list[torch.nn.Module]:
    """Each decoder layer's attention module, in layer order."""
    mods = [m for m in hf.modules() if type(m).__name__.endswith("Attention")]
    assert len(mods) == hf.config.num_hidden_layers
    return mods


def _ids(tok: Any, n: int = 16) -> torch.Tensor:
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) > n
    return torch.tensor([ids[:n], ids[1 : n + 1]])


def _arange(ids: torch.Tensor) -> torch.Tensor:
    return torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)


def _bridge_logits(name: str, hooks: list, ids: torch.Tensor, **kw: object) -> torch.Tensor:
    model = get_model(name)
    with apply_hooks(model, hooks), torch.no_grad():
        return model(ids, **kw)  # type: ignore[operator]


def _close(got: torch.Tensor, want: torch.Tensor, atol: float = ATOL) -> None:
    assert got.shape == want.shape
    diff = float((got - want).abs().max())
    assert diff <= atol, f"max |diff| {diff:.2e} > {atol:.0e}"


def _differs(got: torch.Tensor, base: torch.Tensor) -> None:
    assert float((got - base).abs().max()) > 1e-3, "the intervention changed nothing (the check could not fail)"


@pytest.mark.parametrize("name", ALL)
def test_zero_equals_inv_freq_zeroed(name: str) -> None:
    ref, tok = _ref(name)
    ids = _ids(tok)
    with torch.no_grad():
        base = ref(ids).logits
        _close(_bridge_logits(name, [], ids), base)  # the bridge alone is the reference model
        for m in _rotary_modules(ref):
            m.inv_freq.zero_()
        want = ref(ids).logits
    got = _bridge_logits(name, zero(get_model(name)), ids)
    _close(got, want)
    _differs(got, base)


@pytest.mark.parametrize("which", ["high", "low"])
@pytest.mark.parametrize("name", ALL_SLOW)
def test_zero_bands_equals_inv_freq_masked(name: str, which: str) -> None:
    ref, tok = _ref(name)
    ids = _ids(tok)
    model = get_model(name)
    bands = frequency_bands(model, which, 2)  # type: ignore[arg-type]
    with torch.no_grad():
        base = ref(ids).logits
        for m in _rotary_modules(ref):
            m.inv_freq[bands] = 0.0
        want = ref(ids).logits
    got = _bridge_logits(name, zero(model, bands=bands), ids)
    _close(got, want)
    if which == "high":
        _differs(got, base)


@pytest.mark.parametrize("name", ALL_SLOW)
@pytest.mark.parametrize(
    "pmap,fn",
    [
        (shift(5), lambda t: t + 5),
        (constant(3), lambda t: torch.full_like(t, 3)),
        (reverse(40), lambda t: 39 - t),
        (shuffle(64, seed=1), lambda t: torch.randperm(64, generator=torch.Generator().manual_seed(1))[t]),
        (scale(0.25), lambda t: t.float() * 0.25),
    ],
    ids=["shift", "constant", "reverse", "shuffle", "scale"],
)
def test_replace_equals_edited_position_ids(name: str, pmap: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    ref, tok = _ref(name)
    ids = _ids(tok)
    with torch.no_grad():
        want = ref(ids, position_ids=fn(_arange(ids))).logits  # HF casts position_ids to float: scale works
    _close(_bridge_logits(name, replace(get_model(name), pmap), ids), want)


def test_shuffle_reference_is_the_documented_permutation() -> None:
    """The hand-written permutation above is what ``shuffle(64, seed=1)`` documents."""
    t = torch.arange(64)
    assert torch.equal(shuffle(64, seed=1)(t).long(), torch.randperm(64, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("name", ALL_SLOW)
def test_keep_bands_equals_inv_freq_masked_and_shifted(name: str) -> None:
    """replace(scale(0.5), keep_bands=B): bands in B rotate by t/2, the rest not at all."""
    ref, tok = _ref(name)
    ids = _ids(tok)
    model = get_model(name)
    keep = frequency_bands(model, "low", 3)
    with torch.no_grad():
        for m in _rotary_modules(ref):
            mask = torch.zeros_like(m.inv_freq, dtype=torch.bool)
            mask[keep] = True
            m.inv_freq[~mask] = 0.0
        want = ref(ids, position_ids=_arange(ids) * 0.5).logits
    _close(_bridge_logits(name, replace(model, scale(0.5), keep_bands=keep), ids), want)


@pytest.mark.parametrize("name", ALL)
def test_remove_equals_mean_tables(name: str) -> None:
    ref, tok = _ref(name)
    ids = _ids(tok)
    n = ids.shape[1]
    for m in _rotary_modules(ref):
        inv = m.inv_freq.clone()
        scaling = float(getattr(m, "attention_scaling", 1.0))
        ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None]
        c, s = torch.cos(ang).mean(0) * scaling, torch.sin(ang).mean(0) * scaling

        def forward(x: torch.Tensor, position_ids: torch.Tensor, *a: object, c=c, s=s, **k: object):  # type: ignore[no-untyped-def]
            shape = (*position_ids.shape, 2 * c.numel())
            return torch.cat([c, c]).expand(shape).to(x.dtype), torch.cat([s, s]).expand(shape).to(x.dtype)

        m.forward = forward  # type: ignore[method-assign]
    with torch.no_grad():
        want = ref(ids).logits
    got = _bridge_logits(name, remove(get_model(name)), ids)
    _close(got, want)
    zeroed = _bridge_logits(name, zero(get_model(name)), ids)
    _differs(got, zeroed)  # remove is not zero: high bands are damped


LAYERS = {"tiny-llama": [1], "tiny-neox": [0], "smollm2-135m": [0, 17, 29]}


@pytest.mark.parametrize("verb", ["zero", "scale"])
@pytest.mark.parametrize("name", ALL_SLOW)
def test_layer_subset_equals_per_layer_reference(name: str, verb: str) -> None:
    """Only the chosen layers are edited; the reference hands exactly those layers' attention
    hand-built ``position_embeddings`` (unrotated, or the tables of positions t/2). (Not shift:
    shifting every q and k of a layer alike leaves its scores unchanged.)"""
    ref, tok = _ref(name)
    ids = _ids(tok)
    rotary = _rotary_modules(ref)[0]
    attns = _attention_modules(ref)
    for layer in LAYERS[name]:
        orig = attns[layer].forward

        def patched(*args: Any, orig: Any = orig, **kwargs: Any) -> Any:
            cos, sin = kwargs["position_embeddings"]
            if verb == "zero":
                kwargs["position_embeddings"] = (torch.ones_like(cos), torch.zeros_like(sin))
            else:
                kwargs["position_embeddings"] = rotary(cos, _arange(ids) * 0.5)
            return orig(*args, **kwargs)

        attns[layer].forward = patched  # type: ignore[method-assign]
    with torch.no_grad():
        want = ref(ids).logits
    model = get_model(name)
    hooks = zero(model, layers=LAYERS[name]) if verb == "zero" else replace(model, scale(0.5), layers=LAYERS[name])
    got = _bridge_logits(name, hooks, ids)
    _close(got, want)
    _differs(got, _bridge_logits(name, [], ids))


@pytest.mark.parametrize("name", ["tiny-llama", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
def test_rot_qk_site_equals_table_site_all_heads(name: str) -> None:
    model = get_model(name)
    _, tok = _ref(name)
    ids = _ids(tok)
    verbs: list[Callable[..., Any]] = [
        lambda **k: zero(model, **k),
        lambda **k: replace(model, reverse(40), **k),
        lambda **k: replace(model, scale(0.5), exempt_first=True, **k),
        lambda **k: remove(model, **k),
        lambda **k: zero(model, bands=[0, 1, 2], layers=[1], **k),
    ]
    for verb in verbs:
        _close(_bridge_logits(name, verb(site="rot_qk"), ids), _bridge_logits(name, verb(site="rotary"), ids))


@pytest.mark.parametrize(
    "name,heads,kv_heads,verb",
    [("tiny-llama", [0, 1], [0], "zero"), ("smollm2-135m", [3, 4, 5], [1], "scale")],
)
def test_rot_qk_head_subset_equals_hand_reference(name: str, heads: list[int], kv_heads: list[int], verb: str) -> None:
    """Edit the rotation of one whole KV group only (tiny-llama: 4 q heads / 2 KV heads;
    SmolLM2: 9 / 3). The reference re-applies HF's rotation by hand to those heads' q and k."""
    ref, tok = _ref(name)
    ids = _ids(tok)
    rotary = _rotary_modules(ref)[0]
    orig = modeling_llama.apply_rotary_pos_emb

    def per_head(q, k, cos, sin, *a, **kw):  # type: ignore[no-untyped-def]
        q2, k2 = orig(q, k, cos, sin, *a, **kw)  # q: [b, h, s, d], k: [b, kv, s, d]
        if verb == "zero":
            q2[:, heads], k2[:, kv_heads] = q[:, heads], k[:, kv_heads]
        else:
            c5, s5 = rotary(cos, _arange(ids) * 0.5)
            q5, k5 = orig(q, k, c5, s5, *a, **kw)
            q2[:, heads], k2[:, kv_heads] = q5[:, heads], k5[:, kv_heads]
        return q2, k2

    modeling_llama.apply_rotary_pos_emb = per_head
    try:
        with torch.no_grad():
            want = ref(ids).logits
    finally:
        modeling_llama.apply_rotary_pos_emb = orig
    model = get_model(name)
    hooks = zero(model, site="rot_qk", heads=heads) if verb == "zero" else replace(model, scale(0.5), site="rot_qk", heads=heads)
    got = _bridge_logits(name, hooks, ids)
    _close(got, want)
    _differs(got, _bridge_logits(name, [], ids))


@pytest.mark.parametrize("name", TINY)
def test_exempt_first_equals_position_ids_with_zero_kept(name: str) -> None:
    """replace(shift(4), exempt_first=True): positions [0, 5, 6, ...] in the reference."""
    ref, tok = _ref(name)
    ids = _ids(tok)
    pos = _arange(ids) + 4
    pos[:, 0] = 0
    with torch.no_grad():
        want = ref(ids, position_ids=pos).logits
    model = get_model(name)
    got = _bridge_logits(name, replace(model, shift(4), exempt_first=True), ids)
    _close(got, want)
    _differs(got, _bridge_logits(name, replace(model, shift(4)), ids))


def test_position_decoding_is_exact_up_to_context() -> None:
    for name in ALL:
        model = get_model(name)
        inv, _ = rotary_frequencies(model, 0)
        n = int(model.cfg.n_ctx)  # type: ignore[attr-defined]
        t = torch.arange(n, dtype=torch.float32)
        ang = t[:, None] * inv  # what HF computes: float32 products, then cos/sin
        got = decode_positions(torch.atan2(torch.sin(ang), torch.cos(ang)), inv).round()
        assert torch.equal(got, t), f"{name}: decoding wrong at {int((got != t).nonzero()[0])} (n_ctx {n})"


@pytest.mark.parametrize("name", ALL)
def test_left_padded_batch_uses_real_positions(name: str) -> None:
    """Left-padded rows (different pad lengths) with an attention_mask, on the bridge, equal the HF
    reference given the same mask and hand-edited real positions (shuffle is not offset-invariant,
    so a pad-shifted position would show). Holds whether the bridge derives position_ids from the
    mask itself or they are passed explicitly."""
    ref, tok = _ref(name)
    seq = _ids(tok, 10)
    pad = int(seq.max()) + 1 if tok.pad_token_id is None else tok.pad_token_id
    padded = torch.cat([torch.full((2, 4), pad), seq], 1)
    padded[1, :4], padded[1, 4:6] = pad, pad  # row 1: 6 pads, then 8 tokens
    padded[1, 6:] = seq[1, :8]
    mask = (torch.arange(14) >= torch.tensor([[4], [6]])).long()
    real = positions_from_mask(mask)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(padded, attention_mask=mask, position_ids=perm[real]).logits
    model = get_model(name)
    hooks = replace(model, shuffle(64, seed=0))
    keep = mask.bool()
    for kw in ({}, {"position_ids": real}):
        got = _bridge_logits(name, hooks, padded, attention_mask=mask, **kw)
        _close(got[keep], want[keep])
    no_mask = _bridge_logits(name, hooks, padded)
    _differs(no_mask[keep], want[keep])  # without the mask pads count as positions, and shuffle sees that


def test_errors_name_the_fix() -> None:
    with pytest.raises(SchemeError, match="site='pos_embed'"):
        zero(get_model("tiny-gpt2"), site="rotary")
    with pytest.raises(SchemeError, match="site='pos_embed'"):
        replace(get_model("tiny-gpt2"), shift(1), site="rot_qk", keep_bands=[0])
    with pytest.raises(SchemeError, match="site='alibi'"):
        zero(get_model("tiny-bloom"), site="rotary")
    with pytest.raises(SchemeError, match="site='alibi'"):
        remove(get_model("tiny-bloom"), site="rot_qk")
    with pytest.raises(SchemeError, match="site='rot_qk'"):
        zero(get_model("tiny-llama"), heads=[0])
    with pytest.raises(SchemeError, match="never fire.*site='rotary'"):
        zero(get_model("tiny-neox"), site="rot_qk")
    with pytest.raises(SchemeError, match=r"whole groups: \[0, 1\], \[2, 3\]"):
        zero(get_model("tiny-llama"), site="rot_qk", heads=[0])
    with pytest.raises(SchemeError, match=r"whole groups: \[0, 1, 2\], \[3, 4, 5\], \[6, 7, 8\]"):
        replace(get_model("smollm2-135m"), shift(2), site="rot_qk", heads=[0, 1, 2, 3])
    with pytest.raises(SchemeError, match="not an added vector"):
        project_out(get_model("tiny-llama"), torch.zeros(1, 64), site="rotary")
    with pytest.raises(SchemeError, match="band indices"):
        zero(get_model("tiny-llama"), bands=[99])
    with pytest.raises(SchemeError, match="not both"):
        replace(get_model("tiny-llama"), shift(1), bands=[0], keep_bands=[1])
    with pytest.raises(SchemeError, match="negative positions"), torch.no_grad():
        _bridge_logits("tiny-llama", replace(get_model("tiny-llama"), shift(-3)), torch.tensor([[1, 2, 3, 4]]))
    with pytest.raises(IndexError, match="layers 0..1"):
        zero(get_model("tiny-llama"), layers=[5])
    with pytest.raises(TypeError, match="unexpected keyword argument 'reference'"):
        zero(get_model("tiny-llama"), reference=range(4))  # type: ignore[call-arg]
    with pytest.raises(SchemeError, match="only site.*'rot_qk', 'rotary'"):
        zero(get_model("tiny-gpt2"), bands=[0])


def test_hooks_removed_after_exception() -> None:
    model = get_model("tiny-llama")
    n_before = sum(len(hp._forward_hooks) for hp in model.hook_dict.values())  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="boom"), zero(model, site="rot_qk").applied(model):
        assert sum(len(hp._forward_hooks) for hp in model.hook_dict.values()) > n_before  # type: ignore[attr-defined]
        raise RuntimeError("boom")
    assert sum(len(hp._forward_hooks) for hp in model.hook_dict.values()) == n_before  # type: ignore[attr-defined]
