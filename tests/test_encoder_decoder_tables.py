"""Issue 25: the position tables of encoder-decoder models (learned: BART, mBART with offset 2,
Blenderbot and LED with ``[seq, d]`` tables; sinusoidal: M2M100 with offset ``padding_idx + 1``,
Pegasus, Marian), every verb on both stacks, vs the HF model with its tables edited by hand.

Tiny builds (``models.tiny.build_arch``: 2 encoder + 2 decoder layers, 4 heads of 16; LED's local
window 4). The reference gets the same explicit ``decoder_input_ids`` (8 tokens, the encoder 12) as
the bridge, and both of its tables' rows of the positions in use zeroed / averaged / re-indexed /
projected (``cli.arch_check.learned_check``). Tolerance 1e-5 on logits (measured: 0.0, every
name); every edit moves the reference's logits by >= 1e-4 of their largest value (measured 0.24
to 1.6). ``XGLM`` adds its sinusoidal table inside HF where no hook reaches it: refused by name.
"""

from __future__ import annotations

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import (
    DEC_IDS,
    IDS,
    TOL,
    build_pair,
    learned_check,
    passed,
    ref_tables,
    tables_edited,
)

#: name -> (scheme, offset of position 0 in the encoder and the decoder table, batched output)
EXPECTED = {
    "BartForConditionalGeneration": (p.Scheme.LEARNED, 2, True),
    "MBartForConditionalGeneration": (p.Scheme.LEARNED, 2, True),
    "BlenderbotForConditionalGeneration": (p.Scheme.LEARNED, 0, False),
    "LEDForConditionalGeneration": (p.Scheme.LEARNED, 0, False),
    "M2M100ForConditionalGeneration": (p.Scheme.SINUSOIDAL, 3, True),
    "PegasusForConditionalGeneration": (p.Scheme.SINUSOIDAL, 0, False),
    "MarianMTModel": (p.Scheme.SINUSOIDAL, 0, False),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_both_tables_vs_hf_rows_edited(name: str) -> None:
    g, ref = build_pair(name)
    s = p.inspect(g)
    scheme, offset, batched = EXPECTED[name]
    assert s.scheme is scheme and s.stacks == ("encoder", "decoder"), str(s)
    assert [(t.offset, t.batched, t.trainable) for t in s.family.tables] == [(offset, batched, scheme is p.Scheme.LEARNED)] * 2
    result = learned_check(g, ref)
    ok = passed(result)
    assert set(ok) == {"bare", "zero", "remove", "replace", "reverse", "project_out"}
    assert all(ok.values()), {k: f"{result[k]:.2g} (effect {result.get(k + ':effect', 1):.2g})" for k in ok}


def _logits(model: object, hooks: p.HookList | None = None, **kw: object) -> torch.Tensor:
    with torch.no_grad():
        if hooks is None:
            return model(IDS, decoder_input_ids=DEC_IDS, **kw).logits  # type: ignore[operator, no-any-return]
        with hooks.applied(model):
            return model(IDS, decoder_input_ids=DEC_IDS, **kw)  # type: ignore[operator, no-any-return]


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_one_stack_leaves_the_other_alone(stack: str) -> None:
    """``stacks=`` edits one stack's table: the reference has only that table edited."""
    g, ref = build_pair("BartForConditionalGeneration")
    base = _logits(ref)
    tables = [t for t in ref_tables(g, ref) if (t[0].hook == "hook_pos_embed") == (stack == "encoder")]
    for hooks, edit in ((p.replace(g, p.shift(5), stacks=stack), lambda w, n: w[5 : n + 5]),
                        (p.zero(g, stacks=[stack]), lambda w, n: torch.zeros_like(w[:n]))):
        with tables_edited(tables, edit):
            want = _logits(ref)
        assert float((want - base).abs().max()) > 1e-3  # measured: encoder 4e-3 (random cross-attention is near uniform), decoder 1.3
        assert float((_logits(g, hooks) - want).abs().max()) <= TOL, hooks.label


def test_stacks_are_checked() -> None:
    g, _ = build_pair("MarianMTModel")
    for bad in ("cross", ["encoder", "encoder"], []):
        with pytest.raises(p.SchemeError, match="'encoder', 'decoder'"):
            p.zero(g, stacks=bad)  # type: ignore[arg-type]
    with pytest.raises(p.SchemeError, match="stacks= does not apply at site 'resid_pre'"):
        p.project_out(g, torch.randn(2, 64), site="resid_pre", stacks="encoder")


def test_xglm_is_refused_with_what_still_works() -> None:
    g, _ = build_pair("XGLMForCausalLM")
    why = r"'XGLMForCausalLM' \(bridge, sinusoidal positions\): its sinusoidal table is a fixed buffer.*no hook.*still work"
    with pytest.raises(p.SchemeError, match=why):
        p.zero(g)
    with pytest.raises(p.SchemeError, match=why):
        p.replace(g, p.shift(2))


def test_residual_erasers_run_on_the_encoder_stack() -> None:
    """Erasers and residual ``project_out`` act on the encoder's residual stream (the bridge has no
    ``blocks.i`` alias on encoder-decoder models: ``encoder_blocks.i``) and move the decoder's logits."""
    g, _ = build_pair("BartForConditionalGeneration")
    s = p.inspect(g)
    assert s.resid["resid_pre"] == ("encoder_blocks.0.hook_resid_pre", "encoder_blocks.1.hook_resid_pre")
    data = torch.randint(3, 250, (12, 16), generator=torch.Generator().manual_seed(0))
    eraser = p.fit_eraser(g, data, method="leace", layers=[1], seq_len=16, n_seqs=12, progress=False)
    base = _logits(g, p.HookList([]))
    erased = _logits(g, eraser.hooks(g))
    assert torch.isfinite(erased).all() and float((erased - base).abs().max()) > 1e-5
    moved = _logits(g, p.project_out(g, torch.randn(2, 64), site="resid_pre", layers=[1]))
    assert float((moved - base).abs().max()) > 1e-4
