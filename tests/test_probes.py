"""Probes from sufficient statistics: agreement with scikit-learn, planted signals with a known
answer, mergeability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from pe_hooks import DataError
from pe_hooks.probes import LayerStats, StreamingLDA, StreamingRidge
from pe_hooks.probes.linear import fit_ridge, ridge_heldout


def _data(n: int = 2000, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d)) * r.uniform(0.5, 3, size=d) + r.normal(size=d)
    y = x @ r.normal(size=d) + r.normal(size=n)
    return x, y


def test_ridge_matches_sklearn_on_standardised_features() -> None:
    x, y = _data()
    alpha = 0.05
    ours = StreamingRidge(alpha=alpha)
    for chunk in np.array_split(np.arange(len(y)), 7):  # streamed in 7 batches
        ours.partial_fit(x[chunk], y[chunk])
    sc = StandardScaler().fit(x)  # scikit-learn penalises sum w^2 with alpha * n in these units
    ref = Ridge(alpha=alpha * len(y)).fit(sc.transform(x), y)
    np.testing.assert_allclose(ours.predict(x), ref.predict(sc.transform(x)), atol=1e-7)
    assert abs(ours.score(x, y) - ref.score(sc.transform(x), y)) < 1e-9


def test_lda_matches_sklearn_lsqr_with_shrinkage() -> None:
    r = np.random.default_rng(1)
    y = r.integers(0, 5, size=3000)
    x = r.normal(size=(3000, 10)) + 0.8 * np.eye(10)[y * 2]
    ours = StreamingLDA(n_classes=5, shrinkage=0.2).fit(x, y)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.2).fit(x, y)
    agree = (ours.predict(x) == ref.predict(x)).mean()
    assert agree > 0.999, agree
    assert ours.get_params() == {"n_classes": 5, "shrinkage": 0.2}


def test_heldout_r2_from_moments_equals_direct_computation() -> None:
    x, y = _data(seed=3)
    tr, te = np.arange(1500), np.arange(1500, 2000)

    def stats(idx: np.ndarray) -> LayerStats:
        s = LayerStats.zeros(1, x.shape[1], 1, 0)  # a continuous target: no per-position sums
        xt, yt = torch.tensor(x[idx]), torch.tensor(y[idx])
        zeros = torch.zeros(len(idx), dtype=torch.long)
        s.update(xt, zeros, yt, zeros, yt, zeros)
        return s

    model = fit_ridge(stats(tr), alpha=1e-3)
    r2, rmse = ridge_heldout(model, stats(te))
    pred = model.predict(torch.tensor(x[te])).numpy()
    direct = 1 - ((pred - y[te]) ** 2).sum() / ((y[te] - y[te].mean()) ** 2).sum()
    assert abs(r2 - direct) < 1e-9
    assert abs(rmse - np.sqrt(((pred - y[te]) ** 2).mean())) < 1e-9


@pytest.mark.parametrize("a", [0.05, 0.1, 0.3])
def test_planted_positional_signal_gives_the_analytic_r2(a: float) -> None:
    """x = a * t * u + N(0, I): the best linear predictor of t has R^2 = a^2 var(t) / (a^2 var(t) + 1)."""
    r = np.random.default_rng(2)
    n_seq, T, d = 400, 64, 16
    t = np.tile(np.arange(1, T), n_seq).astype(float)
    u = np.eye(d)[0]
    x = a * t[:, None] * u + r.normal(size=(len(t), d))
    expected = a**2 * t.var() / (a**2 * t.var() + 1)
    half = len(t) // 2
    est = StreamingRidge(alpha=1e-6).fit(x[:half], t[:half])
    assert abs(est.score(x[half:], t[half:]) - expected) < 0.01, (est.score(x[half:], t[half:]), expected)


def test_position_free_signal_is_at_chance() -> None:
    r = np.random.default_rng(4)
    y = r.integers(0, 8, size=6000)
    x = r.normal(size=(6000, 32))
    clf = StreamingLDA(n_classes=8).fit(x[:3000], y[:3000])
    # 3000 test tokens: null std of accuracy ~0.006; 0.03 is a 5-sigma margin
    assert abs(clf.score(x[3000:], y[3000:]) - 1 / 8) < 0.03


def test_merge_equals_all_at_once() -> None:
    x, y = _data(n=600, d=6)
    xt, yt = torch.tensor(x), torch.tensor(y)
    fold = torch.arange(600) % 3
    c = (torch.arange(600) % 4).long()

    def build(idx: slice) -> LayerStats:
        s = LayerStats.zeros(3, 6, 4, 10)
        s.update(xt[idx], fold[idx], yt[idx].abs().long().clamp(max=9).double(), c[idx], yt[idx], c[idx])
        return s

    whole = build(slice(None))
    merged = build(slice(0, 250)).merge(build(slice(250, None)))
    for name in ("n", "sx", "sxx", "sy", "syy", "sxy", "cn", "csx", "pos_n", "pos_sx"):
        assert torch.allclose(getattr(whole, name), getattr(merged, name), atol=1e-9), name


def test_bad_input() -> None:
    with pytest.raises(DataError, match="NaN"):
        StreamingRidge().fit(np.full((3, 2), np.nan), np.zeros(3))
    with pytest.raises(DataError, match="labels must be integers"):
        StreamingLDA(n_classes=2).fit(np.zeros((3, 2)), np.array([0, 1, 5]))
    with pytest.raises(DataError, match="call fit"):
        StreamingRidge().predict(np.zeros((1, 2)))


def test_estimators_are_scikit_learn_estimators_with_data_driven_shrinkage() -> None:
    from sklearn.base import clone

    lda = StreamingLDA(n_classes=5)
    assert clone(lda).get_params() == {"n_classes": 5, "shrinkage": "auto"}
    assert clone(StreamingRidge(alpha=0.5)).get_params() == {"alpha": 0.5}
    r = np.random.default_rng(7)
    y = r.integers(0, 5, 1500)
    x = r.normal(size=(1500, 40)) + 0.8 * np.eye(5, 40)[y]  # weak class means in 40 noisy dims
    ours = lda.fit(x[:600], y[:600]).score(x[600:], y[600:])
    lw = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x[:600], y[:600]).score(x[600:], y[600:])
    assert ours > 0.35 and abs(ours - lw) < 0.03  # chance 0.2; as good as scikit-learn's Ledoit-Wolf choice


def test_erased_moments_equal_the_moments_of_erased_tokens() -> None:
    """``LayerStats.erased``: the statistics of ``x - (x - m) R L^T`` derived from those of ``x``
    equal the statistics accumulated from the erased tokens themselves (every field, every fold)."""
    from dataclasses import fields

    g = torch.Generator().manual_seed(0)
    n, d, r = 500, 12, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 3 + 1
    fold = torch.randint(0, 4, (n,), generator=g)
    y = torch.randint(1, 20, (n,), generator=g)
    ys = y[torch.randperm(n, generator=g)]
    m, R, L = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((d,), (d, r), (d, r)))
    raw, direct = LayerStats.zeros(4, d, 4, 20), LayerStats.zeros(4, d, 4, 20)
    raw.update(x, fold, y, (y - 1) * 4 // 19, ys, (ys - 1) * 4 // 19)
    direct.update(x - (x - m) @ R @ L.T, fold, y, (y - 1) * 4 // 19, ys, (ys - 1) * 4 // 19)
    derived = raw.erased(m, R, L)
    for f in fields(LayerStats):
        assert torch.allclose(getattr(derived, f.name), getattr(direct, f.name), rtol=1e-10, atol=1e-9), f.name
    same = raw.erased(m, torch.zeros(d, 0, dtype=torch.float64), torch.zeros(d, 0, dtype=torch.float64))
    assert all(torch.equal(getattr(same, f.name), getattr(raw, f.name)) for f in fields(LayerStats))
