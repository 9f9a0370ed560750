"""Residual project_out vs HF models with the projection done by torch hooks on decoder layers."""

from __future__ import annotations

import pytest
import torch

from pe_hooks import SchemeError, project_out, remove, replace, shift, zero
from pe_hooks.models import load_hf
from tests.conftest import get_model

ATOL = 1e-5


def _basis(k: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layers", [[0], [0, 1]])
def test_resid_pre_projection_equals_hf_pre_hooks(layers: list[int]) -> None:
    ref, _ = load_hf("tiny-llama")
    basis = _basis(5, 64)
    q = torch.linalg.qr(basis.T)[0].T

    def pre(module: torch.nn.Module, args: tuple, kwargs: dict):  # type: ignore[no-untyped-def]
        h = args[0] if args else kwargs["hidden_states"]
        h = h - (h @ q.T) @ q
        if args:
            return (h, *args[1:]), kwargs
        kwargs["hidden_states"] = h
        return args, kwargs

    handles = [ref.model.layers[i].register_forward_pre_hook(pre, with_kwargs=True) for i in layers]
    ids = torch.tensor([[1, 40, 52, 61, 77, 83, 90]])
    with torch.no_grad():
        want = ref(ids).logits
    for h in handles:
        h.remove()
    model = get_model("tiny-llama")
    hooks = project_out(model, basis, site="resid_pre", layers=layers)
    with hooks.applied(model), torch.no_grad():
        got = model(ids)  # type: ignore[operator]
    assert float((got - want).abs().max()) <= ATOL
    with torch.no_grad():
        base = model(ids)  # type: ignore[operator]
    assert float((got - base).abs().max()) > 1e-3


def test_projection_removes_exactly_the_subspace() -> None:
    model = get_model("tiny-gpt2")
    basis = _basis(3, 64, seed=4)
    hooks = project_out(model, basis, site="resid_post", layers=[0])
    seen = {}
    with hooks.applied(model), torch.no_grad():
        model.run_with_hooks(  # type: ignore[attr-defined]
            torch.tensor([[1, 2, 3, 4, 5]]),
            fwd_hooks=[("blocks.0.hook_resid_post", lambda t, hook: seen.setdefault("x", t.clone()))],
        )
    assert float((seen["x"] @ hooks.basis.T).abs().max()) < 1e-5  # type: ignore[attr-defined]


def test_exempt_first_leaves_bos_untouched() -> None:
    model = get_model("tiny-llama")
    basis = _basis(4, 64)
    ids = torch.tensor([[1, 40, 52, 61]])
    seen: dict[str, torch.Tensor] = {}

    def grab(key: str):  # type: ignore[no-untyped-def]
        def fn(t: torch.Tensor, hook: object) -> None:
            seen[key] = t.clone()

        return fn

    with torch.no_grad():
        model.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_pre", grab("raw"))])  # type: ignore[attr-defined]
        hooks = project_out(model, basis, site="resid_pre", layers=[1], exempt_first=True)
        with hooks.applied(model):
            model.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_pre", grab("proj"))])  # type: ignore[attr-defined]
    assert torch.equal(seen["raw"][:, 0], seen["proj"][:, 0])
    assert not torch.allclose(seen["raw"][:, 1:], seen["proj"][:, 1:])


def test_residual_errors() -> None:
    model = get_model("tiny-llama")
    for verb in (zero, remove):
        with pytest.raises(SchemeError, match="fit_eraser"):
            verb(model, site="resid_pre")
    with pytest.raises(SchemeError, match="fit_eraser"):
        replace(model, shift(1), site="resid_post")
    with pytest.raises(SchemeError, match="needs a basis"):
        project_out(model, site="resid_pre")
    with pytest.raises(SchemeError, match=r"shape \[k, 64\]"):
        project_out(model, torch.zeros(2, 63), site="resid_pre")
    with pytest.raises(SchemeError, match="does not exist"):
        project_out(get_model("tiny-neox"), _basis(1, 64), site="resid_mid")
    with pytest.raises(SchemeError, match="unknown site"):
        zero(model, site="nowhere")
