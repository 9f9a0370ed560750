"""HookList: a plain list of (name, fn) pairs that composes and always cleans up."""

from __future__ import annotations

import pytest
import torch

from pe_hooks import HookList, apply_hooks, project_out, replace, shift, zero
from tests.conftest import get_model

IDS = torch.tensor([[1, 40, 52, 61, 77]])


def test_list_contract_and_repr() -> None:
    model = get_model("tiny-llama")
    a = zero(model, layers=[0])
    b = replace(model, shift(2), layers=[1])
    both = a + b
    assert isinstance(both, HookList) and len(both) == len(a) + len(b)
    assert both.names[: len(a)] == a.names
    assert "zero(rotary" in repr(both) and "replace(rotary" in repr(both)
    assert isinstance(both[0], tuple) and isinstance(both[:2], HookList)
    assert sum([a, b], HookList()).names == both.names  # type: ignore[arg-type]
    assert repr(HookList()) == "HookList('hooks', empty)"


def test_works_with_every_transformerlens_entry_point() -> None:
    model = get_model("tiny-gpt2")
    hooks = zero(model)
    with torch.no_grad():
        want = model.run_with_hooks(IDS, fwd_hooks=hooks)  # type: ignore[attr-defined]
        with model.hooks(fwd_hooks=hooks):  # type: ignore[attr-defined]
            got_ctx = model(IDS)  # type: ignore[operator]
        with hooks.applied(model):
            logits, cache = model.run_with_cache(IDS, names_filter="hook_pos_embed")  # type: ignore[attr-defined]
        for name, fn in hooks:
            model.add_hook(name, fn)  # type: ignore[attr-defined]
        got_add = model(IDS)  # type: ignore[operator]
        model.reset_hooks()  # type: ignore[attr-defined]
        base = model(IDS)  # type: ignore[operator]
    assert torch.allclose(got_ctx, want) and torch.allclose(logits, want) and torch.allclose(got_add, want)
    assert float(cache["hook_pos_embed"].abs().max()) == 0.0
    assert not torch.allclose(base, want)


def test_composition_order_and_cleanup_on_error() -> None:
    model = get_model("tiny-gpt2")
    basis = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    combo = zero(model) + project_out(model, basis, site="resid_pre", layers=[1])
    with pytest.raises(ValueError, match="inside"), apply_hooks(model, combo):
        model(IDS)  # type: ignore[operator]
        raise ValueError("error inside the block")
    # conftest's autouse fixture asserts that no hook is left attached


def test_user_hooks_survive() -> None:
    model = get_model("tiny-gpt2")
    calls: list[int] = []
    model.add_hook("blocks.0.hook_resid_pre", lambda t, hook: calls.append(1))  # type: ignore[attr-defined]
    try:
        with zero(model).applied(model), torch.no_grad():
            model(IDS)  # type: ignore[operator]
        with torch.no_grad():
            model(IDS)  # type: ignore[operator]
        assert len(calls) == 2, "apply_hooks must not remove hooks it did not add"
    finally:
        model.reset_hooks()  # type: ignore[attr-defined]


def test_unknown_hook_name_is_clear() -> None:
    model = get_model("tiny-gpt2")
    with pytest.raises(KeyError, match="pe_hooks.inspect"), apply_hooks(model, [("blocks.9.nothing", lambda t, hook: t)]):
        pass
