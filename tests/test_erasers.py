"""Erasers on planted signals with a known answer: position removed, content kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pe_hooks import DataError
from pe_hooks.erasers import PositionEraser, fit_on_arrays
from pe_hooks.erasers.features import check_concept_labels
from pe_hooks.erasers.methods import SiteFitter
from tests.eval_utils import heldout_position_accuracy

D, T = 128, 32
CHANCE = 1 / 8
# held-out set: 120 sequences x 31 tokens; the null std of accuracy is ~0.006, and a 48-dim
# logistic probe adds a little optimism: 0.04 above chance is a >5-sigma margin
MARGIN = 0.04


def planted(n_seq: int, seed: int, pos_scale: float = 3.0, noise: float = 1.0):  # type: ignore[no-untyped-def]
    """x = content (rank 6, per sequence) + position (rank 4 helix) + noise, positions 0..T-1."""
    g = np.random.default_rng(0)  # the subspaces are fixed across calls
    content_dirs = np.linalg.qr(g.normal(size=(D, 6)))[0].T
    pos_dirs = np.linalg.qr(g.normal(size=(D, 4)))[0].T
    r = np.random.default_rng(seed)
    t = np.tile(np.arange(T), n_seq)
    groups = np.repeat(np.arange(n_seq), T)
    c = r.normal(size=(n_seq, 6))[groups]
    ang = 2 * np.pi * t / T
    helix = np.stack([np.cos(ang), np.sin(ang), np.cos(2 * ang), np.sin(2 * ang)], 1)
    x = c @ content_dirs + pos_scale * helix @ pos_dirs + noise * r.normal(size=(len(t), D))
    return x.astype(np.float32), t, groups, c, content_dirs


def _drop_first(*arrays: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    return [a[t > 0] for a in arrays]


# Fit on 400 sequences (the finite-sample error of the fit is what leaves accuracy above chance).
# LEACE erases up to z_dim directions; with finite samples the ones beyond the true rank are driven
# by noise and take ~z_dim/D of the content variance with them, so z_dim stays well below D here
# (as on a real model: 9 features vs d_model 576).
@pytest.mark.parametrize("method,kw", [("leace", {"n_freqs": 4}), ("leace", {"features": "onehot", "n_bins": 8}), ("mean", {}), ("pca", {"k": 4})])
def test_planted_position_removed_content_kept(method: str, kw: dict) -> None:
    _planted_check(method, kw)


def _content_r2(x: np.ndarray, c: np.ndarray, groups: np.ndarray) -> float:
    """Held-out R^2 of the planted content from x (linear, split by sequence)."""
    tr = groups < np.median(groups)
    a = np.c_[x, np.ones(len(x))]
    coef = np.linalg.lstsq(a[tr], c[tr], rcond=None)[0]
    res = a[~tr] @ coef - c[~tr]
    return float(1 - (res**2).sum() / ((c[~tr] - c[~tr].mean(0)) ** 2).sum())


def _planted_check(method: str, kw: dict) -> None:
    x_fit, t_fit, *_ = planted(400, seed=1)
    x, t, g, c, _ = planted(120, seed=2)
    eraser = fit_on_arrays(x_fit, t_fit, method=method, **kw)
    xe = eraser.transform(x, positions=t)
    x1, xe1, t1, g1, c1 = _drop_first(x, xe, t, g, c, t=t)
    raw_acc = heldout_position_accuracy(x1, t1, g1)
    erased_acc = heldout_position_accuracy(xe1, t1, g1)
    assert raw_acc > 0.6, raw_acc  # the planted signal is strong
    assert erased_acc < CHANCE + MARGIN, f"{method}: {erased_acc:.3f} not at chance {CHANCE}"
    # content kept: the planted content is as linearly decodable after erasure as before
    raw_r2, erased_r2 = _content_r2(x1, c1, g1), _content_r2(xe1, c1, g1)
    assert raw_r2 > 0.3
    assert erased_r2 > 0.95 * raw_r2, (raw_r2, erased_r2)


def test_integer_labels_are_rejected() -> None:
    x, t, *_ = planted(5, seed=0)
    with pytest.raises(DataError, match="single direction.*fourier"):
        fit_on_arrays(x, t, features="integer")
    with pytest.raises(DataError, match="single direction"):
        check_concept_labels(torch.arange(10.0)[:, None], d_model=D)
    with pytest.raises(DataError, match="fewer bins"):
        check_concept_labels(torch.zeros(10, 200), d_model=D)


def test_streaming_equals_one_batch() -> None:
    x, t, *_ = planted(40, seed=3)
    xt, tt = torch.tensor(x), torch.tensor(t)
    for method in ("leace", "mean", "pca"):
        one = SiteFitter(method, D, max_position=T - 1, k=4)
        one.update(xt, tt)
        many = SiteFitter(method, D, max_position=T - 1, k=4)
        for chunk in torch.split(torch.arange(len(t)), 97):
            many.update(xt[chunk], tt[chunk])
        a, b = one.finish().apply(xt, tt), many.finish().apply(xt, tt)
        assert float((a - b).abs().max()) < 1e-4, method


def test_raw_means_inject_position_denoised_means_do_not() -> None:
    """REFERENCE.md's trap: finite-sample per-position means carry noise that is the same for every
    new sequence; subtracting them makes position decodable out of sample."""
    x_fit, t_fit, *_ = planted(6, seed=5, pos_scale=0.0, noise=3.0)  # no position at all, few sequences
    x, t, g, *_ = planted(120, seed=6, pos_scale=0.0, noise=3.0)
    raw = fit_on_arrays(x_fit, t_fit, method="mean", denoise=False).transform(x, positions=t)
    smooth = fit_on_arrays(x_fit, t_fit, method="mean").transform(x, positions=t)
    x1, r1, s1, t1, g1 = _drop_first(x, raw, smooth, t, g, t=t)
    assert heldout_position_accuracy(x1, t1, g1) < CHANCE + MARGIN
    assert heldout_position_accuracy(r1, t1, g1) > CHANCE + 0.1  # injected
    assert heldout_position_accuracy(s1, t1, g1) < CHANCE + MARGIN


def test_save_load_bit_identical(tmp_path: Path) -> None:
    x, t, *_ = planted(30, seed=7)
    for method in ("leace", "mean", "pca"):
        e = fit_on_arrays(x, t, method=method, k=4)
        folder = e.save(tmp_path / method)
        back = PositionEraser.load(folder)
        assert np.array_equal(e.transform(x, positions=t), back.transform(x, positions=t))
        assert back.info == e.info


def test_bad_inputs(tmp_path: Path) -> None:
    x, t, *_ = planted(5, seed=0)
    with pytest.raises(DataError, match="NaN"):
        fit_on_arrays(np.full_like(x, np.nan), t)
    with pytest.raises(DataError, match="non-empty"):
        fit_on_arrays(np.zeros((0, D)), np.zeros(0))
    with pytest.raises(DataError, match="integers"):
        fit_on_arrays(x, t + 0.5)
    e = fit_on_arrays(x, t, method="mean")
    with pytest.raises(DataError, match="beyond the fitted range"):
        e.transform(x[:2], positions=np.array([3, T + 5]))
    with pytest.raises(DataError, match="needs the position"):
        e.transform(x[:2])
    with pytest.raises(DataError, match="fitted on d=128"):
        e.transform(np.zeros((2, 10)))
    with pytest.raises(DataError, match="does not hold"):
        PositionEraser.load(tmp_path)
    with pytest.raises(DataError, match="unknown method"):
        fit_on_arrays(x, t, method="magic")
