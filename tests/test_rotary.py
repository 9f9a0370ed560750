"""Rotary interventions vs independent HF references edited by hand.

References: a separate HF model (``load_hf``) with ``inv_freq`` zeroed or masked per band, run with
hand-edited ``position_ids``, or with its rotary module patched to return mean tables. Tolerance:
1e-5 absolute on logits (float32) unless stated.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pe_hooks import SchemeError, load_hf
from pe_hooks.interventions import (
    apply_hooks,
    constant,
    remove,
    replace,
    reverse,
    scale,
    shift,
    shuffle,
    zero,
)
from pe_hooks.interventions.rotary import decode_positions, frequency_bands
from pe_hooks.sites import rotary_frequencies
from tests.conftest import get_model

ATOL = 1e-5
ROTARY = ["tiny-llama", "tiny-neox"]


def _rotary_modules(hf: torch.nn.Module) -> list[torch.nn.Module]:
    mods = [m for m in hf.modules() if hasattr(m, "inv_freq")]
    assert mods, "no rotary module found in the reference"
    return mods


def _ids(tok: object, n: int = 24) -> torch.Tensor:
    ids = tok("Rotary positions hide in every attention head here.", add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    return torch.tensor([ids[:n], ids[1 : n + 1]])


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


@pytest.mark.parametrize("name", ROTARY)
def test_zero_equals_inv_freq_zeroed(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    with torch.no_grad():
        base = ref(ids).logits
        for m in _rotary_modules(ref):
            m.inv_freq.zero_()
        want = ref(ids).logits
    got = _bridge_logits(name, zero(get_model(name)), ids)
    _close(got, want)
    _differs(got, base)


@pytest.mark.parametrize("name", ROTARY)
def test_zero_bands_equals_inv_freq_masked(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    model = get_model(name)
    bands = frequency_bands(model, "high", 2)
    with torch.no_grad():
        for m in _rotary_modules(ref):
            m.inv_freq[bands] = 0.0
        want = ref(ids).logits
    _close(_bridge_logits(name, zero(model, bands=bands), ids), want)


@pytest.mark.parametrize("name", ROTARY)
@pytest.mark.parametrize(
    "pmap,fn",
    [
        (shift(5), lambda t: t + 5),
        (constant(3), lambda t: torch.full_like(t, 3)),
        (reverse(40), lambda t: 39 - t),
        (shuffle(64, seed=1), lambda t: shuffle(64, seed=1)(t).long()),
        (scale(0.25), lambda t: t.float() * 0.25),
    ],
    ids=["shift", "constant", "reverse", "shuffle", "scale"],
)
def test_replace_equals_edited_position_ids(name: str, pmap: object, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    with torch.no_grad():
        want = ref(ids, position_ids=fn(pos)).logits  # HF casts position_ids to float: scale works
    _close(_bridge_logits(name, replace(get_model(name), pmap), ids), want)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ROTARY)
def test_remove_equals_mean_tables(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    n = ids.shape[1]
    mods = _rotary_modules(ref)
    for m in mods:
        inv = m.inv_freq.clone()
        ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None]
        c, s = torch.cos(ang).mean(0), torch.sin(ang).mean(0)

        def forward(x: torch.Tensor, position_ids: torch.Tensor, *a: object, c=c, s=s, **k: object):  # type: ignore[no-untyped-def]
            shape = (*position_ids.shape, 2 * c.numel())
            return torch.cat([c, c]).expand(shape).to(x.dtype), torch.cat([s, s]).expand(shape).to(x.dtype)

        m.forward = forward  # type: ignore[method-assign]
    with torch.no_grad():
        want = ref(ids).logits
    got = _bridge_logits(name, remove(get_model(name)), ids)
    _close(got, want)
    with torch.no_grad():
        zeroed = _bridge_logits(name, zero(get_model(name)), ids)
    _differs(got, zeroed)  # remove is not zero: high bands are damped


def test_layer_subset_equals_per_layer_reference() -> None:
    """Zero rotation in layer 1 only; the reference feeds layer 1's attention unrotated tables."""
    name = "tiny-llama"
    ref, tok = load_hf(name)
    ids = _ids(tok)
    attn = ref.model.layers[1].self_attn
    orig = attn.forward

    def patched(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        cos, sin = kwargs["position_embeddings"]  # type: ignore[misc]
        kwargs["position_embeddings"] = (torch.ones_like(cos), torch.zeros_like(sin))
        return orig(*args, **kwargs)

    attn.forward = patched  # type: ignore[method-assign]
    with torch.no_grad():
        want = ref(ids).logits
    _close(_bridge_logits(name, zero(get_model(name), layers=[1]), ids), want)


def test_rot_qk_site_equals_table_site_all_heads() -> None:
    model = get_model("tiny-llama")
    _, tok = load_hf("tiny-llama")
    ids = _ids(tok)
    for verb in (lambda **k: zero(model, **k), lambda **k: replace(model, shift(3), **k), lambda **k: remove(model, **k)):
        a = _bridge_logits("tiny-llama", verb(site="rotary"), ids)
        b = _bridge_logits("tiny-llama", verb(site="rot_qk"), ids)
        _close(a, b)


def test_rot_qk_head_subset_equals_hand_reference() -> None:
    """Zero rotation for KV group 0 (query heads 0,1 of tiny-llama's 4 heads / 2 KV heads)."""
    name = "tiny-llama"
    ref, tok = load_hf(name)
    ids = _ids(tok)
    import transformers.models.llama.modeling_llama as ml

    orig = ml.apply_rotary_pos_emb

    def per_head(q, k, cos, sin, *a, **kw):  # type: ignore[no-untyped-def]
        q2, k2 = orig(q, k, cos, sin, *a, **kw)  # q: [b, h, s, d], k: [b, kv, s, d]
        q2[:, :2], k2[:, :1] = q[:, :2], k[:, :1]
        return q2, k2

    ml.apply_rotary_pos_emb = per_head
    try:
        with torch.no_grad():
            want = ref(ids).logits
    finally:
        ml.apply_rotary_pos_emb = orig
    got = _bridge_logits(name, zero(get_model(name), site="rot_qk", heads=[0, 1]), ids)
    _close(got, want)


def test_exempt_first_keeps_position_zero() -> None:
    model = get_model("tiny-llama")
    _, tok = load_hf("tiny-llama")
    ids = _ids(tok)
    a = _bridge_logits("tiny-llama", replace(model, shift(4), exempt_first=True), ids)
    b = _bridge_logits("tiny-llama", replace(model, shift(4)), ids)
    _differs(a, b)


def test_position_decoding_is_exact_up_to_context() -> None:
    for name in ["tiny-llama", "tiny-neox", "smollm2-135m"]:
        model = get_model(name)
        inv, _ = rotary_frequencies(model, 0)
        n = min(int(model.cfg.n_ctx), 8192)  # type: ignore[attr-defined]
        t = torch.arange(n, dtype=torch.float32)
        ang = torch.atan2(torch.sin(t[:, None] * inv), torch.cos(t[:, None] * inv))
        got = decode_positions(ang, inv).round()
        assert torch.equal(got, t), f"{name}: decoding wrong at {int((got != t).nonzero()[0])}"


def test_smollm2_zero_and_shift_match_reference() -> None:
    """Tolerance 1e-4 on logits of magnitude ~30: the un-intervened bridge already differs from HF
    by 5e-5 over SmolLM2's 30 layers (relative 2e-6), so that is the floor of any comparison."""
    ref, tok = load_hf("smollm2-135m")
    ids = tok(["The capital of France is Paris, and the capital of Italy is"], return_tensors="pt").input_ids
    model = get_model("smollm2-135m")
    pos = torch.arange(ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        want_shift = ref(ids, position_ids=pos + 7).logits
        for m in _rotary_modules(ref):
            m.inv_freq.zero_()
        want_zero = ref(ids).logits
    _close(_bridge_logits("smollm2-135m", replace(model, shift(7)), ids), want_shift, atol=1e-4)
    _close(_bridge_logits("smollm2-135m", zero(model), ids), want_zero, atol=1e-4)


def test_errors_name_the_fix() -> None:
    with pytest.raises(SchemeError, match="site='pos_embed'"):
        zero(get_model("tiny-gpt2"), site="rotary")
    with pytest.raises(SchemeError, match="site='alibi'"):
        zero(get_model("tiny-bloom"), site="rotary")
    with pytest.raises(SchemeError, match="site='rot_qk'"):
        zero(get_model("tiny-llama"), heads=[0])
    with pytest.raises(SchemeError, match="never fire.*site='rotary'"):
        zero(get_model("tiny-neox"), site="rot_qk")
    with pytest.raises(SchemeError, match="whole groups"):
        zero(get_model("tiny-llama"), site="rot_qk", heads=[0])
    with pytest.raises(SchemeError, match="not an added vector"):
        from pe_hooks.interventions import project_out

        project_out(get_model("tiny-llama"), torch.zeros(1, 64), site="rotary")
    with pytest.raises(SchemeError, match="band indices"):
        zero(get_model("tiny-llama"), bands=[99])
    with pytest.raises(IndexError, match="layers 0..1"):
        zero(get_model("tiny-llama"), layers=[5])


def test_hooks_removed_after_exception() -> None:
    model = get_model("tiny-llama")
    hooks = zero(model)
    with pytest.raises(RuntimeError, match="boom"), hooks.applied(model):
        raise RuntimeError("boom")
    # the autouse fixture in conftest checks nothing is left attached


@pytest.mark.parametrize("name", ROTARY)
def test_left_padded_batch_uses_real_positions(name: str) -> None:
    """A left-padded row with an attention_mask equals the unpadded sequence under a map that is
    not offset-invariant (shuffle), i.e. the hooks see real token positions, not pad-shifted ones."""
    model = get_model(name)
    seq = torch.tensor([[1, 40, 52, 61, 77, 83]])
    padded = torch.cat([torch.full((1, 3), 2), seq], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], 1).long()
    hooks = replace(model, shuffle(64, seed=0))
    with hooks.applied(model), torch.no_grad():
        want = model(seq)  # type: ignore[operator]
        got = model(padded, attention_mask=mask)[:, 3:]  # type: ignore[operator]
        shifted = model(torch.cat([torch.full((1, 3), 2), seq], 1))[:, 3:]  # type: ignore[operator]
    _close(got, want)
    _differs(shifted, want)  # without the mask the positions are 3..8, and shuffle sees that
