"""Sampling branches on a real causal model: latents, seeding, and the equality with decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pe_hooks import DataError
from pe_hooks.interventions import zero
from pe_hooks.viz.branches import branches
from tests.conftest import get_model


def test_latents_shapes_and_seeding() -> None:
    model = get_model("tiny-llama")
    a = branches(model, "hello", n_branches=3, max_new_tokens=6, layers=[0, 1], progress=False)
    b = branches(model, "hello", n_branches=3, max_new_tokens=6, layers=[0, 1], progress=False)
    assert a.latents[1].shape == (18, 64) and set(a.latents) == {0, 1}
    assert np.array_equal(a.branch, np.repeat(np.arange(3), 6))
    assert a.position.min() == a.prompt_len  # generated tokens only (BOS/prompt excluded)
    assert torch.equal(a.sequences, b.sequences) and np.array_equal(a.latents[1], b.latents[1])
    assert len({tuple(s.tolist()) for s in a.sequences}) > 1, "branches should differ"


def test_collected_latents_equal_those_seen_while_decoding() -> None:
    """Generate-then-forward gives the same latents as capturing during KV-cache decoding."""
    model = get_model("tiny-llama")
    res = branches(model, "hello", n_branches=2, max_new_tokens=5, layers=[1], progress=False)
    seen: list[torch.Tensor] = []

    def grab(t: torch.Tensor, hook: object) -> None:
        seen.append(t[:, -1].clone())

    prompt = res.sequences[:, : res.prompt_len]
    # replay the sampled tokens one step at a time through the cache, capturing each step
    with torch.no_grad():
        from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

        model.add_hook("blocks.1.hook_resid_pre", grab)  # type: ignore[attr-defined]
        try:
            for step in range(5):
                model(res.sequences[:, : res.prompt_len + step + 1])  # type: ignore[operator]
        finally:
            model.reset_hooks()  # type: ignore[attr-defined]
    decoded = torch.stack(seen[:5], 1).reshape(-1, 64).numpy()
    assert np.allclose(decoded, res.latents[1], atol=1e-5)
    assert prompt.shape[1] == res.prompt_len


def test_intervened_branches_differ() -> None:
    model = get_model("tiny-llama")
    a = branches(model, "hello", n_branches=2, max_new_tokens=4, layers=[1], progress=False)
    b = branches(model, "hello", n_branches=2, max_new_tokens=4, layers=[1], hooks=zero(model), progress=False)
    assert not np.allclose(a.latents[1], b.latents[1])


def test_branch_errors() -> None:
    model = get_model("tiny-llama")
    with pytest.raises(DataError, match="non-empty prompt"):
        branches(model, [" "], progress=False)
    with pytest.raises(IndexError, match="layers 0..1"):
        branches(model, "x", layers=[5], progress=False)
    with pytest.raises(DataError, match="exceed the context"):
        branches(model, "x", max_new_tokens=10_000, progress=False)
    with pytest.raises(DataError, match="not a causal"):
        branches(get_model("tiny-bert"), "x", progress=False)
    with pytest.raises(DataError, match="at least 2"):
        branches(model, "x", n_branches=1, progress=False)
