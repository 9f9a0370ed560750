"""Issue 23, cases 1, 3, 5: a left-padded row gets exactly what it gets alone, and ``k`` counts.

Independent references: for ``remove`` on learned positions, the HF model with every W_pos row
replaced by hand by the mean of that row's own positions ``0..n-1``, run on the short row alone;
for the ALiBi eraser, the same eraser on the row run alone (its positions need no mask there).
"""

from __future__ import annotations

import pytest
import torch

import pe_hooks as p
from pe_hooks.core.errors import SchemeError
from pe_hooks.models import load_hf
from tests.bad_input_cases import eraser_for, hf_mean_tables
from tests.conftest import get_model

SHORT = torch.tensor([[1, 40, 52, 61]])
LONG = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12, 9, 15, 71]])


def padded(short: torch.Tensor = SHORT, long: torch.Tensor = LONG) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``short`` left-padded (pad id 0) beside ``long``, its mask, and the pad length."""
    k = long.shape[1] - short.shape[1]
    batch = torch.cat([torch.cat([torch.zeros(1, k, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :k] = 0
    return batch, mask, k


def row_vs_alone(model: object, hooks: p.HookList) -> tuple[torch.Tensor, torch.Tensor]:
    batch, mask, k = padded()
    with torch.no_grad(), hooks.applied(model):  # type: ignore[arg-type]
        alone = model(SHORT)[0]  # type: ignore[operator]
        in_batch = model(batch, attention_mask=mask)  # type: ignore[operator]
        long_alone = model(LONG)[0]  # type: ignore[operator]
    assert float((in_batch[1] - long_alone).abs().max()) <= 1e-5
    return alone, in_batch[0, k:]


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bert"])
def test_remove_on_a_padded_row_is_its_own_mean(name: str) -> None:
    g = get_model(name)
    alone, in_batch = row_vs_alone(g, p.remove(g))
    assert float((alone - in_batch).abs().max()) <= 1e-5  # was 0.161 on tiny-gpt2: the batch's longest row's mean
    hf, _ = load_hf(name)
    base = getattr(hf, "transformer", None) or hf.bert
    wpe = getattr(base, "wpe", None) or base.embeddings.position_embeddings
    with torch.no_grad():
        wpe.weight[:] = wpe.weight[: SHORT.shape[1]].mean(0)
        want = hf(SHORT).logits[0]
    assert float((in_batch - want).abs().max()) <= 1e-5


def test_remove_with_reference_is_unchanged_by_padding() -> None:
    g = get_model("tiny-gpt2")
    alone, in_batch = row_vs_alone(g, p.remove(g, reference=range(32)))
    assert float((alone - in_batch).abs().max()) <= 1e-5


def test_project_out_k_counts_on_learned_positions() -> None:
    g = get_model("tiny-gpt2")
    basis = torch.linalg.qr(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)))[0].T
    h = p.project_out(g, basis, k=1)
    assert h.basis.shape == (1, 64) and "k=1" in h.label  # was (3, 64) and "k=3"
    assert torch.allclose(h.basis.abs(), basis[:1].abs(), atol=1e-6)
    hf, _ = load_hf("tiny-gpt2")
    w = hf.transformer.wpe.weight
    with torch.no_grad():
        w[:] = w - (w @ basis[:1].T) @ basis[:1]
        want = hf(SHORT).logits
        got = g.run_with_hooks(SHORT, fwd_hooks=list(h))
    assert float((got - want).abs().max()) <= 1e-5
    assert p.project_out(g, basis, k=2, site="resid_pre").basis.shape == (2, 64)


def test_project_out_k_needs_independent_leading_rows() -> None:
    g = get_model("tiny-gpt2")
    v = torch.randn(64)
    with pytest.raises(SchemeError, match="independent"):
        p.project_out(g, torch.stack([v, 2 * v, torch.randn(64)]), k=2)


@pytest.fixture(scope="module")
def bloom_erasers() -> dict[str, p.PositionEraser]:
    # the bad-input table's fits (shared across the session): layer 1 only, and layer 0
    return {"[1]": eraser_for("tiny-bloom", layers=[1]), "[0]": eraser_for("tiny-bloom")}


def test_alibi_eraser_after_layer_0_uses_each_rows_positions(bloom_erasers: dict[str, p.PositionEraser]) -> None:
    g = get_model("tiny-bloom")
    e = bloom_erasers["[1]"]
    assert e.info.exempt_first
    alone, in_batch = row_vs_alone(g, e.hooks(g))
    assert float((alone - in_batch).abs().max()) <= 1e-5  # was 0.47: the pad slot was exempted, not the first token


def test_alibi_eraser_at_layer_0_refuses_left_padding(bloom_erasers: dict[str, p.PositionEraser]) -> None:
    g = get_model("tiny-bloom")
    h = bloom_erasers["[0]"].hooks(g)
    batch, mask, _ = padded()
    with pytest.raises(SchemeError, match="padding_side = 'right'"), torch.no_grad(), h.applied(g):
        g(batch, attention_mask=mask)
    right = torch.cat([torch.cat([SHORT, torch.zeros(1, LONG.shape[1] - SHORT.shape[1], dtype=torch.long)], 1), LONG])
    rmask = (torch.arange(right.shape[1]) < SHORT.shape[1]).long()[None].repeat(2, 1)
    rmask[1] = 1
    with torch.no_grad(), h.applied(g):  # right padding: the named fix works, and is exact
        got = g(right, attention_mask=rmask)[0, : SHORT.shape[1]]
        want = g(SHORT)[0]
    assert float((got - want).abs().max()) <= 1e-5


def test_alibi_residual_exempt_first_on_a_padded_row() -> None:
    g = get_model("tiny-bloom")
    basis = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    alone, in_batch = row_vs_alone(g, p.project_out(g, basis, site="resid_pre", layers=[1], exempt_first=True))
    assert float((alone - in_batch).abs().max()) <= 1e-5


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
def test_rotary_remove_on_a_padded_row_is_its_own_mean(name: str) -> None:
    """Rotary ``remove()`` without ``reference=``: the short row averages its own positions
    ``0..n-1``, as alone; reference: HF with its rotary module patched to return those mean tables."""
    g = get_model(name)
    alone, in_batch = row_vs_alone(g, p.remove(g))
    assert float((alone - in_batch).abs().max()) <= 1e-5  # was 0.003 on tiny-llama (the long row's mean)
    hf = hf_mean_tables(name, SHORT.shape[1])
    with torch.no_grad():
        want = hf(SHORT).logits[0]
    assert float((in_batch - want).abs().max()) <= 1e-5
