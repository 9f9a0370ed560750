"""One intervention language for the sweep and the branches (``pe_hooks.conditions``)."""

from __future__ import annotations

import pytest

import pe_hooks as p
from pe_hooks import ArgumentError, DataError
from pe_hooks.conditions import Intervention, parse_intervention
from tests.conftest import get_model


def test_names_parse_the_same_for_both_commands() -> None:
    assert parse_intervention("erase-pca") == Intervention("erase-pca")
    assert parse_intervention(" Replace:shuffle=3 ") == ("replace", "shuffle", 3.0)
    with pytest.raises(DataError, match="unknown intervention 'blur'; built-in: baseline"):
        parse_intervention("blur")
    with pytest.raises(DataError, match="replace:constant=P with P >= 0"):
        parse_intervention("replace:constant=-2")


def test_the_sweep_runs_replace_maps_and_checks_them_before_any_work() -> None:
    """``replace:constant=0`` on learned positions gives every token W_pos[0]: layer 0 loses its
    position exactly as under ``zero`` (both at the token floor), far below the baseline."""
    model = get_model("tiny-gpt2")
    res = p.sweep(model, None, ["baseline", "zero", "replace:constant=0"], layers=[0], n_seqs=32, progress=False,
                  nonlinear=())
    acc = res.pivot("acc").loc[0]
    assert acc["baseline"] > 0.9
    assert abs(acc["replace:constant=0"] - acc["zero"]) < 0.03
    with pytest.raises(DataError, match="needs a value"):
        p.sweep(model, None, ["baseline", "replace:shift"], layers=[0], n_seqs=8, progress=False)


def test_run_branches_checks_its_options_before_any_work() -> None:
    model = get_model("tiny-llama")
    with pytest.raises(DataError, match="generated under hooks"):
        p.run_branches(model, "hi", intervention="erase", progress=False)
    with pytest.raises(DataError, match="unknown intervention"):
        p.run_branches(model, "hi", intervention="blur", progress=False)
    with pytest.raises(ArgumentError, match="erase_on"):
        p.run_branches(model, "hi", erase_on="everywhere", progress=False)
    with pytest.raises(ArgumentError, match="n_perm"):
        p.run_branches(model, "hi", n_perm=3, progress=False)
