"""Position maps used by ``replace``."""

from __future__ import annotations

import pytest
import torch

from pe_hooks import SchemeError, constant, reverse, scale, shift, shuffle, table
from pe_hooks.interventions.positions import as_position_map

POS = torch.arange(6).unsqueeze(0)


def test_maps() -> None:
    assert constant(3)(POS).tolist() == [[3.0] * 6]
    assert shift(2)(POS).tolist() == [[2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    assert reverse(6)(POS).tolist() == [[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]]
    assert scale(0.5)(POS).tolist() == [[0.0, 0.5, 1.0, 1.5, 2.0, 2.5]]
    perm = shuffle(6, seed=3)(POS)
    assert sorted(perm[0].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert not torch.equal(perm, POS.float())
    assert torch.equal(shuffle(6, seed=3)(POS), perm), "same seed, same permutation"
    assert table(torch.tensor([5, 4, 3, 2, 1, 0]))(POS).tolist() == reverse(6)(POS).tolist()


def test_maps_apply_per_position_under_incremental_decoding() -> None:
    # one token at a time must give the same as the whole sequence at once
    full = shuffle(8, seed=0)(torch.arange(8).unsqueeze(0))
    steps = torch.cat([shuffle(8, seed=0)(torch.tensor([[t]])) for t in range(8)], dim=1)
    assert torch.equal(full, steps)


def test_out_of_range_is_an_error() -> None:
    with pytest.raises(SchemeError, match="larger length"):
        reverse(4)(POS)
    with pytest.raises(SchemeError, match="larger n_positions"):
        shuffle(4)(POS)
    with pytest.raises(SchemeError, match="entries"):
        table(torch.tensor([1, 0]))(POS)


def test_coercion() -> None:
    assert as_position_map(4)(POS).tolist() == [[4.0] * 6]
    assert as_position_map(torch.tensor([1, 1, 1, 1, 1, 1]))(POS).tolist() == [[1.0] * 6]
    assert as_position_map(lambda p: p * 2)(POS).tolist() == [[0.0, 2.0, 4.0, 6.0, 8.0, 10.0]]
    with pytest.raises(SchemeError, match="ambiguous"):
        as_position_map(True)
    with pytest.raises(SchemeError, match="cannot use"):
        as_position_map("shift")  # type: ignore[arg-type]
