"""Issue 25: ALiBi beyond the tiny BLOOM: MPT (``build_mpt_alibi_tensor``, 6 heads: not a power of
two) and BLOOM at 4 layers, each vs the HF model with its ALiBi builder patched by hand, and
Falcon with ``alibi=True`` (TransformerLens reimplements its attention with other slopes: refused,
measured, with a canary for the upstream fix).

pe-hooks assumes no slope formula: it reads each head's slope from layer 0's scores with the
queries zeroed (``sites.alibi_bias``). The reference (``cli.arch_check.alibi_check``) patches the
modelling module's ``build_*alibi*`` function to return no bias, no bias on head 1, or
``slope * f(t_k)`` for ``f = reverse(12)`` and ``scale(3)`` (``remove`` is ``zero`` for ALiBi).
Tolerance 1e-5 on logits (measured <= 4.2e-7); every edit moves the logits by >= 1e-4 of their
largest value (measured 1.5e-3 to 0.58).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import IDS, alibi_check, build_pair, passed
from pe_hooks.sites.alibi_bias import alibi_facts
from pe_hooks.sites.facts import model_facts
from pe_hooks.sites.fidelity import AttentionFidelity
from pe_hooks.sites.registry import BRIDGE_NOT_HF, describe


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
    """UPSTREAM CANARY (transformer-lens 4.3.0): the bridge reimplements Falcon's attention with
    ``alibi=True`` and adds half of BLOOM's slopes (the slopes read from its scores), while HF
    Falcon adds BLOOM's (``build_alibi_tensor``): bare logits differ by ~2.5e-2. pe-hooks measures
    that (``sites.fidelity``: each bridge attention block vs its own HF module) and refuses the
    model with the registry's ``BRIDGE_NOT_HF`` reason. When this test fails because the bare
    difference is gone, the refusal lifts by itself (nothing names Falcon): add Falcon+alibi to
    the verb test above and drop its refusal from tests/test_architectures.py's REFUSED_NAMES."""
    g, ref = build_pair("FalconForCausalLM+alibi")
    mask = {"attention_mask": torch.ones_like(IDS)}
    with torch.no_grad():
        bare = float((g(IDS) - ref(IDS, **mask).logits).abs().max())  # type: ignore[operator]
    assert bare > 1e-3
    slopes = alibi_facts(g).slopes  # what the bridge's scores hold
    hf = sys.modules[type(ref).__module__].build_alibi_tensor(torch.ones(1, 8), 4, torch.float32)  # [heads, 1, 8]
    assert slopes == pytest.approx([0.125, 0.03125, 0.0078125, 0.001953125])
    assert (hf[:, 0, 1] - hf[:, 0, 0]).tolist() == pytest.approx([2 * m for m in slopes])  # HF: BLOOM's, twice as large
    fidelity = model_facts(g).attention
    assert fidelity is not None and fidelity.differs == (0, 1, 2, 3) and fidelity.worst > 1e-2, fidelity
    assert BRIDGE_NOT_HF in p.inspect(g).refused


def test_bridge_not_hf_is_a_measured_refusal() -> None:
    """The refusal is the registry's data applied to measured facts, not a class name: the same
    ALiBi facts with attention equal to HF fit the 'alibi' family; with one block off, refused."""
    g, _ = build_pair("BloomForCausalLM")
    facts = model_facts(g)
    assert facts.attention is not None and not facts.attention.differs and facts.attention.worst <= 1e-6
    ok, why = describe("bridge", p.Scheme.ALIBI, facts, None, None, alibi_facts(g))
    assert ok is not None and ok.name == "alibi" and why == ""
    off = replace(facts, attention=AttentionFidelity({0: 0.0, 1: 3e-2}))
    spec, why = describe("bridge", p.Scheme.ALIBI, off, None, None, alibi_facts(g))
    assert spec is None and why.startswith(BRIDGE_NOT_HF) and "blocks [1] differ by up to 0.03" in why
