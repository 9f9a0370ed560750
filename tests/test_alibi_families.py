"""Issue 25: ALiBi beyond the tiny BLOOM: MPT (``build_mpt_alibi_tensor``, 6 heads: not a power of
two) and BLOOM at 4 layers, each vs the HF model with its ALiBi builder patched by hand, and
Falcon with ``alibi=True`` (TransformerLens reimplements its attention).

pe-hooks assumes no slope formula: it reads each head's slope from layer 0's scores with the
queries zeroed (``sites.alibi_bias``). The reference (``cli.arch_check.alibi_check``) patches the
modelling module's ``build_*alibi*`` function to return no bias, no bias on head 1, or
``slope * f(t_k)`` for ``f = reverse(12)`` and ``scale(3)`` (``remove`` is ``zero`` for ALiBi).
Tolerance 1e-5 on logits (measured <= 4.2e-7); every edit moves the logits by >= 1e-4 of their
largest value (measured 1.5e-3 to 0.58).
"""

from __future__ import annotations

import sys

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import IDS, TOL, alibi_builder_patched, alibi_check, build_pair, passed


@pytest.mark.parametrize("name", ["MptForCausalLM", "BloomForCausalLM"])
def test_alibi_verbs_vs_hf_builder_patched(name: str) -> None:
    g, ref = build_pair(name)
    s = p.inspect(g)
    assert s.scheme is p.Scheme.ALIBI and len(s.family.alibi_slopes) == s.n_heads, str(s)
    result = alibi_check(g, ref)
    ok = passed(result)
    assert set(ok) == {"bare", "zero", "remove", "zero_heads", "replace", "scale"}
    assert all(ok.values()), {k: f"{result[k]:.2g} (effect {result.get(k + ':effect', 1):.2g})" for k in ok}


def test_measured_mpt_slopes_are_hfs() -> None:
    """The slopes read from the scores are ``build_mpt_alibi_tensor``'s own (6 heads: MPT interleaves
    the odd terms of the next power of two)."""
    g, ref = build_pair("MptForCausalLM")
    hf = sys.modules[type(ref).__module__].build_mpt_alibi_tensor(6, 8)  # [heads, 1, 8]: slope * (t - 7)
    want = (hf[:, 0, 1] - hf[:, 0, 0]).tolist()
    assert p.inspect(g).family.alibi_slopes == pytest.approx(want, rel=1e-6)
    assert want[4] > want[0]  # not the geometric order of a power of two


def test_falcon_alibi_bridge_differs_from_hf_upstream() -> None:
    """UPSTREAM (transformer-lens 4.3.0): the bridge's Falcon ALiBi attention does not reproduce HF
    Falcon with ``alibi=True`` (bare logits differ by ~2.5e-2), so only what the bridge holds can be
    edited. pe-hooks reads the slopes the bridge really adds (half of BLOOM's here) and ``zero``
    removes them exactly: the bridge then equals HF with its ALiBi builder returning no bias.
    When this test fails because the bare difference is gone, add Falcon+alibi to the test above."""
    g, ref = build_pair("FalconForCausalLM+alibi")
    s = p.inspect(g)
    assert s.family.alibi_slopes == pytest.approx([0.125, 0.03125, 0.0078125, 0.001953125])
    mask = {"attention_mask": torch.ones_like(IDS)}
    with torch.no_grad():
        bare = float((g(IDS) - ref(IDS, **mask).logits).abs().max())  # type: ignore[operator]
        with alibi_builder_patched(ref, s.n_heads, IDS.shape[1], None):
            want = ref(IDS, **mask).logits
        with p.zero(g).applied(g):
            got = g(IDS)  # type: ignore[operator]
    assert bare > 1e-3
    assert float((got - want).abs().max()) <= TOL
