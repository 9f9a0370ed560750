"""Issue 24: every rotary layout TransformerLens 4.3 runs, vs the HF model edited by hand.

Each architecture is built tiny from its transformers config class (``models.tiny.build_arch``: GQA
4/2, head size 16, a partial rotary factor other than the default), twice with the same seed: one
booted into the bridge, one kept as plain HF and edited by hand (``cli.arch_check``: ``inv_freq``
zeroed or masked per band, rotary module patched to mean tables, ``position_ids`` reversed; cached
decoding vs a full forward). Tolerance 1e-5 on logits (1e-4 for cached steps), and every edit must
move the reference's logits by >= 1e-4 of their largest value (so each check can fail).

Fast: a representative subset (Llama-like with YaRN scaling, q/k-normed Qwen3,
NeoX-like Phi-3, partial Phi/StableLM, interleaved Cohere, interleaved pairs GLM, NoPE layers
Cohere-2/SmolLM3, half-width GPT-OSS, MLA DeepSeek-V3 (rotary sub-head), Qwen3.5 (linear attention
with full attention every 4th layer, partial, q/k normed, gated q; text positions make its M-RoPE
sections equal, so its tables are plain rotate-half)). ``-m slow``: every TL name.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import build_pair, passed, reference_check
from pe_hooks.cli.architectures_cmd import FAST_TESTED, VARIANTS, architectures, measure, tl_names
from pe_hooks.sites.coverage import FAILED, NOT_BUILT, REFUSED, SUPPORTED, render
from pe_hooks.sites.registry import RotaryLayout

# what each fast name is, as inspect must describe it: (layout, rotated width, rotating layers, rot_qk works)
EXPECTED: dict[str, tuple[RotaryLayout, int, tuple[int, ...], bool]] = {
    "LlamaForCausalLM+yarn": (RotaryLayout.HALF, 16, (0, 1, 2, 3), True),
    "Qwen3ForCausalLM": (RotaryLayout.HALF, 16, (0, 1, 2, 3), True),
    "Phi3ForCausalLM": (RotaryLayout.HALF, 8, (0, 1, 2, 3), False),
    "PhiForCausalLM": (RotaryLayout.HALF, 4, (0, 1, 2, 3), True),
    "StableLmForCausalLM": (RotaryLayout.HALF, 8, (0, 1, 2, 3), True),
    "CohereForCausalLM": (RotaryLayout.INTERLEAVED, 16, (0, 1, 2, 3), True),
    "GlmForCausalLM": (RotaryLayout.ADJACENT, 4, (0, 1, 2, 3), True),
    "Cohere2ForCausalLM": (RotaryLayout.INTERLEAVED, 16, (0, 1, 2), True),
    "SmolLM3ForCausalLM": (RotaryLayout.HALF, 16, (0, 1, 2), True),
    "GptOssForCausalLM": (RotaryLayout.HALF_SINGLE, 16, (0, 1, 2, 3), True),
    "DeepseekV3ForCausalLM": (RotaryLayout.ADJACENT, 8, (0, 1, 2, 3), False),
    "Qwen3_5ForCausalLM": (RotaryLayout.HALF, 8, (3,), True),  # full attention every 4th layer; q normed, gated,
}


def test_fast_list_is_the_one_the_table_cites() -> None:
    assert set(EXPECTED) == set(FAST_TESTED)


@pytest.mark.parametrize("name", FAST_TESTED)
def test_verbs_vs_hf(name: str) -> None:
    pair = build_pair(name)
    s = p.inspect(pair[0])
    layout, width, layers, rot_qk = EXPECTED[name]
    assert (s.rotary_layout, s.rotary_dim, s.rotary_layers, bool(s.rot_q)) == (layout, width, layers, rot_qk), str(s)
    result = reference_check(name, pair=pair)
    ok = passed(result)
    want = {"bare", "zero", "bands", "remove", "replace", "kv_cache"} | ({"rot_qk"} if rot_qk else set())
    assert set(ok) == want
    assert all(ok.values()), {k: f"{result[k]:.2g} (effect {result.get(k + ':effect', 1):.2g})" for k in ok if not ok[k]}


@pytest.mark.parametrize(("name", "why"), [
    ("DeepseekV3ForCausalLM", r"Here attn.hook_rot_q/k carry only a rotary sub-head .*multi-head latent attention.*site='rotary'"),
    ("Phi3ForCausalLM", r"attn.hook_rot_q/k never fire.*site='rotary'"),
])
def test_rot_qk_refused_where_it_cannot_rebuild_heads(name: str, why: str) -> None:
    """DeepSeek-V3's hook_rot_q/k hold only the rope part of each head (the table verbs above are
    checked against HF's rope part edited by hand); Phi-3's never fire: rot_qk says so and names
    the site that works."""
    g, _ = build_pair(name)
    for verb in (p.zero, p.remove, lambda m, site: p.replace(m, p.reverse(4), site=site)):
        with pytest.raises(p.SchemeError, match=why):
            verb(g, site="rot_qk")


REFUSED_NAMES = {
    "GPTJForCausalLM": "rotary_emb.hook_cos/sin does not exist",  # HF attention wrapped whole
    "CodeGenForCausalLM": "rotary_emb.hook_cos/sin does not exist",
    "Gemma4ForCausalLM": "per-layer attn.hook_cos/sin does not exist",  # top-level tables only
    "LlamaForCausalLM+dynamic": "changes inv_freq with the sequence length",
    # TL 4.3 reimplements Falcon's ALiBi attention with half of BLOOM's slopes (canary: test_alibi_families.py)
    "FalconForCausalLM+alibi": "the bridge's own attention differs from the HF model's attention module",
}


@pytest.mark.parametrize("name", list(REFUSED_NAMES))
def test_refused_names_say_why_and_what_still_works(name: str) -> None:
    """A refused architecture: ``inspect`` names it and the reason, every positional verb raises
    that message, and what the message says still works does (residual erasers, project_out)."""
    g, _ = build_pair(name)
    arch = name.partition("+")[0]
    why = f"cannot edit the positions of architecture '{arch}'.*{REFUSED_NAMES[name]}.*erasers and probes.*still work"
    s = p.inspect(g)
    assert re.search(why, s.refused) and "REFUSED" in str(s) and not s.rotary_cos and not s.attn_scores, str(s)
    for verb in (p.zero, p.remove, lambda m: p.replace(m, p.reverse(4)), lambda m: p.zero(m, site="rot_qk"), p.frequency_bands):
        with pytest.raises(p.SchemeError, match=why):
            verb(g)
    ids = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12]])
    with torch.no_grad():
        base = g(ids)  # type: ignore[operator]
        with p.project_out(g, torch.randn(2, int(g.cfg.d_model)), site="resid_pre", layers=[1]).applied(g):
            assert float((g(ids) - base).abs().max()) > 1e-4  # type: ignore[operator]
    data = torch.randint(3, 200, (6, 12), generator=torch.Generator().manual_seed(0))
    eraser = p.fit_eraser(g, data, method="mean", layers=[1], seq_len=12, n_seqs=6, progress=False)
    with torch.no_grad(), eraser.hooks(g).applied(g):
        assert torch.isfinite(g(ids)).all()  # type: ignore[operator]


def test_inspect_changes_nothing_on_the_model() -> None:
    g, _ = build_pair("PhiForCausalLM")
    g.train()  # type: ignore[attr-defined]
    hooks = {n: (len(h._forward_hooks), len(h._backward_hooks)) for n, h in g.hook_dict.items()}  # type: ignore[attr-defined]
    pre = len(g.original_model._forward_pre_hooks)  # type: ignore[attr-defined]
    rng, py = torch.random.get_rng_state(), random.getstate()
    p.inspect(g)
    assert g.training  # type: ignore[attr-defined]
    assert hooks == {n: (len(h._forward_hooks), len(h._backward_hooks)) for n, h in g.hook_dict.items()}  # type: ignore[attr-defined]
    assert len(g.original_model._forward_pre_hooks) == pre  # no input guard either (load_model installs it)  # type: ignore[attr-defined]
    assert torch.equal(torch.random.get_rng_state(), rng) and random.getstate() == py


def test_left_padded_interleaved_row_equals_the_row_alone() -> None:
    """Interleaved tables (Cohere) decode per row: a left-padded short row gets what it gets alone."""
    g, _ = build_pair("CohereForCausalLM")
    short, long = torch.tensor([[1, 40, 52, 61]]), torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12]])
    k = long.shape[1] - short.shape[1]
    batch = torch.cat([torch.cat([torch.zeros(1, k, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :k] = 0
    for hooks in (p.remove(g), p.replace(g, p.reverse(16)), p.zero(g, exempt_first=True)):
        with torch.no_grad(), hooks.applied(g):
            got = g(batch, attention_mask=mask)[0, k:]  # type: ignore[operator]
            want = g(short)[0]  # type: ignore[operator]
        assert float((got - want).abs().max()) <= 1e-5, hooks.label


def test_coverage_command_writes_the_table(tmp_path: object) -> None:
    """The command measures each name in its own process and writes the table; rows say supported
    (with each verb's reference difference), refused (with the reason), not buildable (with why)."""
    out = tmp_path / "architectures.md"  # type: ignore[operator]
    (refused,) = architectures(out, names=["GPTJForCausalLM"], jobs=1, timeout=240)  # one subprocess
    assert refused.status == REFUSED and "rotary_emb.hook_cos/sin does not exist" in refused.reason, refused
    assert "| GPTJForCausalLM | refused | rotary | residual only |" in out.read_text()
    supported, missing = measure("GPT2LMHeadModel"), measure("NoSuchForCausalLM")  # in this process
    assert supported.status == SUPPORTED and {"zero", "remove", "replace", "project_out"} <= set(supported.passed) and all(supported.verbs[v] <= 1e-5 for v in supported.passed), supported
    assert missing.status == NOT_BUILT and "no class NoSuchForCausalLM in transformers" in missing.reason
    text = render([supported, refused, missing])
    assert "3 names: 1 supported (1 reference-tested), 1 refused, 1 not buildable offline, 0 failed" in text
    assert "| GPT2LMHeadModel | supported | learned |" in text and "test_every_architecture (slow)[GPT2LMHeadModel]" in text


def test_readme_states_the_tables_counts() -> None:
    """The README's architecture counts are those of the generated docs/architectures.md."""
    root = Path(__file__).resolve().parents[1]
    table, readme = (root / "docs/architectures.md").read_text(), " ".join((root / "README.md").read_text().split())
    got = re.search(r"\*\*(\d+) names: (\d+) supported \((\d+) reference-tested\), (\d+) refused, (\d+) not buildable "
                    r"offline, (\d+) failed\.\*\*", table)
    assert got, "docs/architectures.md has no counts line"
    total, sup, tested, refused, built, failed = got.groups()
    for claim in (f"Of the {total} names", f"**{sup} supported**, all {tested} with every applicable verb",
                  f"**{refused} refused**", f"**{built} not buildable offline**", f"{failed} failing"):
        assert claim in readme, claim


@pytest.mark.slow
@pytest.mark.parametrize("name", tl_names() + list(VARIANTS))
def test_every_architecture(name: str) -> None:
    """Every TL name: refused by name with a reason, not buildable offline (said why), or every
    checked verb equal to its hand-edited HF reference — never silently wrong."""
    row = measure(name)
    assert row.status != FAILED, row.reason
    assert row.status == SUPPORTED or row.reason
