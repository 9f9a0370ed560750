"""Bad input on TL 3.x ``HookedTransformer`` (issue 14): the same clear errors as on the bridge.

The context-length check (learned W_pos, and TL 3's precomputed rotary tables), token ids, hooks
bound to their model, non-finite positions, and hooks that always detach.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import pe_hooks as p
from pe_hooks.data import load_data
from tests.tl3.conftest import TL3_FAMILIES, get_hooked

IDS = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12]])
LONG = torch.full((1, 300), 7, dtype=torch.long)
BASIS = torch.linalg.qr(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)))[0].T.contiguous()
_other: dict[str, Any] = {}
_erasers: dict[str, Any] = {}


def other(name: str) -> Any:
    """Same architecture, other weights (seed 1)."""
    if name not in _other:
        _other[name] = p.load_model(name, backend="hooked", seed=1)
    return _other[name]


def eraser(name: str) -> Any:
    if name not in _erasers:
        _erasers[name] = p.fit_eraser(get_hooked(name), None, layers=[0], seq_len=16, n_seqs=8, progress=False)
    return _erasers[name]


def run(model: Any, hooks: Any, ids: torch.Tensor = IDS, mode: str = "rwh") -> torch.Tensor:
    with torch.no_grad():
        if mode == "rwh":
            return model.run_with_hooks(ids, fwd_hooks=list(hooks))  # type: ignore[no-any-return]
        with p.apply_hooks(model, hooks):
            return model(ids)  # type: ignore[no-any-return]


def hook_counts(model: Any) -> dict[str, int]:
    return {n: len(hp._forward_hooks) for n, hp in model.hook_dict.items()}


VERBS: dict[str, Callable[[Any, str], Any]] = {
    "zero": lambda m, n: p.zero(m),
    "remove": lambda m, n: p.remove(m),
    "replace": lambda m, n: p.replace(m, p.shift(0)),
    "project_out(resid)": lambda m, n: p.project_out(m, BASIS, site="resid_pre"),
    "eraser hooks": lambda m, n: eraser(n).hooks(m),
    "no hooks": lambda m, n: p.HookList(),
}


@pytest.mark.parametrize("mode", ["rwh", "apply_hooks"])
@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
def test_longer_than_the_context_is_a_clear_error(name: str, verb: str, mode: str) -> None:
    """GPT-2's W_pos and TL 3's rotary tables have n_ctx rows: every verb (and none) says so."""
    model = get_hooked(name)
    with pytest.raises(p.DataError, match="shorten the sequence to at most 256 tokens"):
        run(model, VERBS[verb](model, name), LONG, mode)


def test_project_out_of_w_pos_too_long() -> None:
    model = get_hooked("tiny-gpt2")
    with pytest.raises(p.DataError, match="shorten the sequence to at most 256 tokens"):
        run(model, p.project_out(model, k=2), LONG)


def test_kv_cache_generation_past_the_context() -> None:
    model = get_hooked("tiny-gpt2")
    with pytest.raises(p.DataError, match="shorten the sequence"), p.apply_hooks(model, p.zero(model)), torch.no_grad():
        model.generate(torch.full((1, 250), 7), max_new_tokens=10, use_past_kv_cache=True, verbose=False,  # type: ignore[operator]
                       do_sample=False, stop_at_eos=False)


def test_alibi_beyond_256_tokens_is_exact() -> None:
    model = get_hooked("tiny-bloom")  # n_ctx 2048: 300 tokens are inside its context
    torch.testing.assert_close(run(model, p.replace(model, p.shift(0)), LONG), run(model, [], LONG), atol=1e-5, rtol=0)


def test_load_data_too_long() -> None:
    with pytest.raises(p.DataError, match="seq_len <= 256"):
        load_data(get_hooked("tiny-llama"), torch.ones(2, 257, dtype=torch.long))


@pytest.mark.parametrize("name", TL3_FAMILIES)
@pytest.mark.parametrize(("ids", "error", "fix"), [
    (torch.full((1, 8), 10**6), p.RangeError, "vocabulary"),
    (torch.full((1, 8), -1), p.RangeError, "start at 0"),
    (torch.rand(1, 8), p.DataError, "convert with .long()"),
], ids=["id >= vocab", "negative id", "float tokens"])
def test_bad_token_ids_under_a_verb(name: str, ids: torch.Tensor, error: type[Exception], fix: str) -> None:
    model = get_hooked(name)
    with pytest.raises(error, match=fix.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        run(model, p.remove(model), ids)


@pytest.mark.parametrize("name", TL3_FAMILIES)
@pytest.mark.parametrize("verb", ["zero", "replace", "eraser hooks"])
def test_hooks_of_one_model_refuse_another(name: str, verb: str) -> None:
    hooks = VERBS[verb](get_hooked(name), name)
    with pytest.raises(p.ModelMismatchError, match="Build the hooks from the model you run"):
        run(other(name), hooks)


def test_eraser_checks_its_model() -> None:
    with pytest.raises(p.ModelMismatchError, match="other weights"):
        eraser("tiny-gpt2").hooks(other("tiny-gpt2"))
    with pytest.raises(p.ModelMismatchError, match="fit or build it again on this model"):
        eraser("tiny-gpt2").hooks(get_hooked("tiny-llama"))


@pytest.mark.parametrize("name", TL3_FAMILIES)
@pytest.mark.parametrize(("fn", "fix"), [
    (lambda x: x * float("nan"), "finite positions"),
    (lambda x: x + float("inf"), "finite positions"),
    (lambda x: x > 0, "real positions"),
    (lambda x: x - 3, "stays >= 0"),
], ids=["nan", "inf", "bool", "negative"])
def test_bad_positions(name: str, fn: Callable[[torch.Tensor], Any], fix: str) -> None:
    model = get_hooked(name)
    with pytest.raises(p.SchemeError, match=fix):
        run(model, p.replace(model, fn))


@pytest.mark.parametrize("name", TL3_FAMILIES)
def test_hooks_detach_on_errors(name: str) -> None:
    model = get_hooked(name)
    before = hook_counts(model)
    with pytest.raises(KeyboardInterrupt), p.apply_hooks(model, p.remove(model)):
        raise KeyboardInterrupt
    with pytest.raises(p.DataError):
        run(model, p.remove(model), torch.rand(1, 8), mode="apply_hooks")
    with pytest.raises(p.HookPointError), p.apply_hooks(model, p.remove(model) + [("blocks.9.nothing", lambda x, hook: x)]):
        pass
    assert hook_counts(model) == before
