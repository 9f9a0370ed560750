"""KV-cache decoding under an intervention equals a no-cache forward over the full sequence.

Each new token must get the intervened rotation of *its own* position, not of position 0 of a
one-token forward. Tolerance: 1e-5 on tiny-model logits, 1e-4 on SmolLM2 (see test_rotary.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pe_hooks.interventions import HookList, constant, remove, replace, reverse, scale, shift, shuffle, zero
from tests.conftest import get_model

NEW = 6

VERBS: dict[str, Callable[[object], HookList]] = {
    "zero": lambda m: zero(m),
    "remove": lambda m: remove(m, reference=range(32)),
    "shift": lambda m: replace(m, shift(9)),
    "constant": lambda m: replace(m, constant(2)),
    "shuffle": lambda m: replace(m, shuffle(64, seed=0)),
    "reverse": lambda m: replace(m, reverse(40)),
    "scale": lambda m: replace(m, scale(0.5)),
    "bands": lambda m: zero(m, bands=[0, 1]),
    "rot_qk": lambda m: replace(m, shift(3), site="rot_qk") if m.cfg.n_key_value_heads else zero(m),  # type: ignore[attr-defined]
}


def _check(name: str, hooks_fn: Callable[[object], HookList], prompt: torch.Tensor, atol: float) -> None:
    model = get_model(name)
    hooks = hooks_fn(model)
    with hooks.applied(model), torch.no_grad():
        out = model.generate(  # type: ignore[attr-defined]
            prompt, max_new_tokens=NEW, do_sample=False, use_past_kv_cache=True, verbose=False,
            output_logits=True, stop_at_eos=False,
        )
        full = model(out.sequences)  # type: ignore[operator]
    step_logits = torch.stack(out.logits, dim=1)  # [b, NEW, vocab]
    want = full[:, prompt.shape[1] - 1 : -1]
    diff = float((step_logits - want).abs().max())
    assert diff <= atol, f"{name}: cached decoding differs from the full forward by {diff:.2e}"
    assert torch.equal(out.sequences[:, prompt.shape[1] :], want.argmax(-1))


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
def test_cached_generation_equals_full_forward(name: str, verb: str) -> None:
    if name == "tiny-neox" and verb == "rot_qk":
        pytest.skip("rot_q/k never fire on the NeoX bridge (tested as an error in test_rotary.py)")
    prompt = torch.tensor([[1, 40, 52, 61, 77, 83, 90, 101]])
    _check(name, VERBS[verb], prompt, atol=1e-5)


def test_intervention_changes_generation() -> None:
    """Guard against a vacuous pass: zeroing rotation changes what the model computes."""
    model = get_model("tiny-llama")
    prompt = torch.tensor([[1, 40, 52, 61, 77, 83, 90, 101]])
    with torch.no_grad():
        base = model(prompt)  # type: ignore[operator]
        with zero(model).applied(model):
            z = model(prompt)  # type: ignore[operator]
    assert float((base - z).abs().max()) > 1e-3


@pytest.mark.parametrize("verb", ["zero", "shift", "shuffle"])
def test_smollm2_cached_generation(verb: str) -> None:
    model = get_model("smollm2-135m")
    prompt = model.tokenizer("The capital of France is", return_tensors="pt").input_ids  # type: ignore[attr-defined]
    _check("smollm2-135m", VERBS[verb], prompt, atol=1e-4)
