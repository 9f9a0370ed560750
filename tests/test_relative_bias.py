"""Issue 25: relative position bias (T5-style buckets) on T5, mT5, LongT5 and SwitchTransformers,
vs the HF model with ``relative_attention_bias`` edited by hand.

Tiny builds (``models.tiny.build_arch``: 8 buckets up to distance 20, so 12 tokens reach both the
exact and the logarithmic buckets; LongT5 local radius 3). ``cli.arch_check.relative_check``:
``zero`` vs both tables zeroed; ``heads=[1, 3]`` vs those columns zeroed; ``stacks="decoder"`` vs
the decoder's table only; ``remove`` vs each table set to its per-head mean over the pairs in use;
``replace(reverse(12))`` and ``replace(scale(2))`` vs HF's own ``_relative_position_bucket`` fed the
mapped distances (LongT5: decoder only, its encoder bias is over a block window). Tolerance 1e-5
times the largest reference logit (T5's reach ~37: float32 rounding of a per-head constant shift
gives 1e-5 for ``remove``; every other check is exact, 0.0); every edit moves the logits by >= 1e-4
of their largest value (measured 0.025 to 0.39).
"""

from __future__ import annotations

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import DEC_IDS, IDS, build_pair, passed, relative_check

NAMES = ["T5ForConditionalGeneration", "MT5ForConditionalGeneration", "LongT5ForConditionalGeneration",
         "SwitchTransformersForConditionalGeneration"]


@pytest.mark.parametrize("name", NAMES)
def test_relative_verbs_vs_hf_bias_edited(name: str) -> None:
    g, ref = build_pair(name)
    s = p.inspect(g)
    assert s.scheme is p.Scheme.RELATIVE and s.stacks == ("encoder", "decoder"), str(s)
    enc, dec = s.family.relative
    assert (enc.bidirectional, dec.bidirectional, enc.num_buckets, enc.max_distance) == (True, False, 8, 20)
    assert (enc.windowed, dec.windowed) == (name.startswith("LongT5"), False)
    result = relative_check(g, ref)
    ok = passed(result)
    assert set(ok) == {"bare", "zero", "zero_heads", "zero_decoder", "remove", "replace", "scale"}
    assert all(ok.values()), {k: f"{result[k]:.2g} (effect {result.get(k + ':effect', 1):.2g})" for k in ok}


def _run(g: object, hooks: p.HookList | None = None) -> torch.Tensor:
    with torch.no_grad():
        if hooks is None:
            return g(IDS, decoder_input_ids=DEC_IDS)  # type: ignore[operator, no-any-return]
        with hooks.applied(g):
            return g(IDS, decoder_input_ids=DEC_IDS)  # type: ignore[operator, no-any-return]


def test_remove_equals_zero_and_a_shift_changes_nothing() -> None:
    """Claims of the module doc, as written: ``remove`` (a constant per head) is ``zero`` in the
    attention pattern, and a shift leaves a relative bias as it is."""
    g, _ = build_pair("T5ForConditionalGeneration")
    base, zero = _run(g), _run(g, p.zero(g))
    scale = float(base.abs().max())
    assert float((zero - base).abs().max()) > 0.5
    assert float((_run(g, p.remove(g)) - zero).abs().max()) <= 1e-5 * scale
    assert float((_run(g, p.replace(g, p.shift(4))) - base).abs().max()) == 0.0


def test_what_does_not_apply_says_what_does() -> None:
    g, _ = build_pair("T5ForConditionalGeneration")
    with pytest.raises(p.SchemeError, match="layers= does not apply to a relative position bias"):
        p.zero(g, layers=[1])
    with pytest.raises(p.SchemeError, match="exempt_first does not apply"):
        p.remove(g, exempt_first=True)
    with pytest.raises(p.SchemeError, match="not a vector.*site='resid_pre'"):
        p.project_out(g, k=2)
    with pytest.raises(p.SchemeError, match="site='relative'"):
        p.zero(g, site="pos_embed")
    with pytest.raises(p.RangeError):
        p.zero(g, heads=[4])


def test_longt5_encoder_window_refuses_replace_by_name() -> None:
    g, _ = build_pair("LongT5ForConditionalGeneration")
    with pytest.raises(p.SchemeError, match="local block window.*stacks='decoder'"):
        p.replace(g, p.reverse(12))
    assert float((_run(g, p.replace(g, p.reverse(12), stacks="decoder")) - _run(g)).abs().max()) > 1e-3
