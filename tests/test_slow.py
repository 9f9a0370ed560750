"""Long checks on real models (``make test-slow``; not part of CI's ``make test``)."""

from __future__ import annotations

import pytest

from pe_hooks.probes import sweep
from tests.conftest import get_model

pytestmark = pytest.mark.slow


def test_smollm2_leace_at_every_layer_reaches_the_token_floor() -> None:
    """Issue 4's acceptance on real text: per-layer LEACE (fitted on 128 other sequences) brings the
    held-out probe within 0.08 of the token floor at every one of the 31 residual sites, while the
    un-erased probe is well above it from layer 2 on."""
    res = sweep(get_model("smollm2-135m"), None, ["baseline", "erase"], n_seqs=128, n_fit=128, progress=False)
    floor = res.meta["token_floor_acc"]
    acc = res.pivot("acc")
    assert (acc["erase"] < floor + 0.08).all(), acc["erase"].max()
    assert (acc.loc[2:, "baseline"] > acc.loc[2:, "erase"] + 0.08).all()
    r2 = res.pivot("r2")
    assert (r2["erase"] < 0.1).all() and (r2.loc[2:, "baseline"] > 0.5).all()


def test_minilm_zeroing_w_pos_reaches_the_token_floor_at_every_layer() -> None:
    res = sweep(get_model("minilm-l6"), None, ["baseline", "zero"], n_seqs=128, progress=False)
    floor = res.meta["token_floor_acc"]
    acc = res.pivot("acc")
    assert (abs(acc["zero"] - floor) < 0.03).all()
    assert (acc["baseline"] > 0.6).all()


def test_smollm2_bfloat16_sweep_agrees_with_float32() -> None:
    """The main job's default dtype (``--dtype auto`` = bfloat16 on CPUs with native bfloat16) gives
    the float32 answers: every probe accuracy within 0.015 and every ridge R^2 within 0.01, with and
    without the LEACE eraser, on the same sequences and folds."""
    import torch

    from pe_hooks import load_model

    kw = dict(layers=[1, 8, 16, 24, 30], n_seqs=128, n_fit=128, nonlinear=("knn_cosine", "mlp"), progress=False)
    r32 = sweep(get_model("smollm2-135m"), None, ["baseline", "erase"], **kw)  # type: ignore[arg-type]
    r16 = sweep(load_model("smollm2-135m", dtype=torch.bfloat16), None, ["baseline", "erase"], **kw)  # type: ignore[arg-type]
    assert (r32.meta["dtype"], r16.meta["dtype"]) == ("float32", "bfloat16")
    for metric, tol in [("acc", 0.015), ("acc_knn_cosine", 0.015), ("acc_mlp", 0.015), ("r2", 0.01)]:
        diff = (r16.pivot(metric) - r32.pivot(metric)).abs()
        assert diff.notna().any().any() and float(diff.max().max()) <= tol, (metric, diff)
    assert (r32.pivot("acc").loc[8:, "baseline"] > r32.pivot("acc").loc[8:, "erase"] + 0.05).all()  # the probes see position
