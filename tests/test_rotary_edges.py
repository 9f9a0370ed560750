"""Issue 23 on rotary models: maps that edit their input, left-padded ``remove``, long positions.

Independent references: a separate HF model (eager attention) run with hand-edited
``position_ids`` (``t + 2`` for a map that adds 2 in place; ``arange + offset`` for long positions),
or with its rotary module patched to return each row's own mean tables (``remove`` on a padded
batch). Tolerance 1e-5 on float32 logits unless stated.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import pe_hooks as p
from pe_hooks.models import load_hf
from tests.conftest import get_model

ATOL = 1e-5
IDS = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12, 9, 15, 71, 5]])


def _ref(name: str) -> Any:
    ref, _ = load_hf(name)
    ref.set_attn_implementation("eager")
    return ref


def _arange(ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
    return torch.arange(ids.shape[1])[None].expand_as(ids) + offset


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---- case 4: a map that edits its input in place ------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
@pytest.mark.parametrize("site", ["rotary", "rot_qk"])
def test_in_place_map_gives_cos_and_sin_the_same_positions(name: str, site: str) -> None:
    g = get_model(name)
    if site == "rot_qk" and not p.inspect(g).rot_q:
        pytest.skip("hook_rot_q/k never fire on this architecture")
    hooks = p.replace(g, lambda q: q.add_(2).float(), site=site)
    with torch.no_grad(), hooks.applied(g):
        got = g(IDS)
        again = g(IDS)  # the positions pe-hooks keeps are not changed by the map either
    with torch.no_grad():
        want = _ref(name)(IDS, position_ids=_arange(IDS) + 2).logits
    assert _diff(got, want) <= ATOL  # was 3.9e-3: cos(t+2), sin(t+4)
    assert _diff(again, want) <= ATOL


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bloom"])
def test_in_place_map_on_learned_and_alibi(name: str) -> None:
    g = get_model(name)
    with torch.no_grad():
        with p.replace(g, p.shift(2)).applied(g):
            want = g(IDS)
        with p.replace(g, lambda q: q.add_(2).float()).applied(g):
            got = g(IDS)
    assert _diff(got, want) <= ATOL


def test_a_random_map_is_called_once_per_forward() -> None:
    """cos and sin of every layer come from one call of the map (a random map stays a rotation)."""
    g = get_model("tiny-llama")
    calls: list[int] = []

    def noisy(t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return t.float() + torch.rand(t.shape) * 3

    with torch.no_grad(), p.replace(g, noisy).applied(g):
        g(IDS)
    assert len(calls) == 1
