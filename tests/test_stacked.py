"""The sweep's probes: the stacked linear probe and the torch kNN, against scikit-learn and on planted
signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from concept_erasure import optimal_linear_shrinkage
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from pe_hooks.probes.nonlinear import knn_predictions
from pe_hooks.probes.stacked import (
    discriminant_directions,
    fit_logistic,
    shrunk_covariance,
    stacked_predictions,
)
from pe_hooks.probes.stats import LayerStats

T, BINS, FOLDS = 32, 4, 4


def planted(n_seqs: int, d: int, signal: float, seed: int, per_sequence_code: bool = False) -> tuple[torch.Tensor, ...]:
    """Tokens of ``n_seqs`` sequences (positions 1..T): the bin of the position sets a point on a
    circle in dims 0-1 (strength ``signal``; no single direction orders the bins) plus N(0, I);
    ``per_sequence_code``: instead, each (sequence, bin) gets its own random code, so position can
    only be read by recognising the sequence."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.arange(1, T + 1).repeat(n_seqs)
    seq = torch.arange(n_seqs).repeat_interleave(T)
    c = (pos - 1) * BINS // T
    x = torch.randn(len(pos), d, generator=g)
    if per_sequence_code:
        codes = torch.randn(n_seqs, BINS, d, generator=g)
        x += signal * codes[seq, c]
    else:
        ang = 2 * torch.pi * c.double() / BINS
        x[:, 0] += signal * torch.cos(ang).float()
        x[:, 1] += signal * torch.sin(ang).float()
    shuffled = c.clone()
    for s in range(n_seqs):
        m = torch.nonzero(seq == s).squeeze(-1)
        shuffled[m] = c[m[torch.randperm(len(m), generator=g)]]
    return x, pos, c, shuffled, seq % FOLDS


def stacked_acc(x: torch.Tensor, pos: torch.Tensor, c: torch.Tensor, shuffled: torch.Tensor, fold: torch.Tensor) -> tuple[float, float]:
    st = LayerStats.zeros(FOLDS, x.shape[1], BINS, 0)
    st.update(x, fold, pos, c, pos, shuffled)
    pred = stacked_predictions(st, x, fold, torch.stack([c, shuffled]))
    return float((pred[0] == c).double().mean()), float((pred[1] == shuffled).double().mean())


def sklearn_lr_acc(x: torch.Tensor, c: torch.Tensor, fold: torch.Tensor) -> float:
    correct = 0
    for f in range(FOLDS):
        tr, te = (fold != f).numpy(), (fold == f).numpy()
        sc = StandardScaler().fit(x[tr].numpy())
        clf = LogisticRegression(max_iter=1000).fit(sc.transform(x[tr].numpy()), c[tr].numpy())
        correct += int((clf.predict(sc.transform(x[te].numpy())) == c[te].numpy()).sum())
    return correct / len(c)


def test_shrinkage_equals_concept_erasure() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 40, 12, generator=g, dtype=torch.float64)
    s = a.transpose(1, 2) @ a / 40
    for i in range(3):
        assert torch.allclose(shrunk_covariance(s, torch.full((3,), 40.0))[i], optimal_linear_shrinkage(s[i], 40), atol=1e-12)


@pytest.mark.parametrize("shrinkage", ["auto", 0.3])
def test_discriminant_directions_equal_a_direct_computation_on_the_tokens(shrinkage: str | float) -> None:
    """Each excluded set's directions, from the moments, against the same formula on the kept
    tokens themselves (covariance by numpy, auto shrinkage by concept-erasure)."""
    x, pos, c, shuffled, fold = planted(24, 12, 1.0, seed=5)
    x = x.double() @ torch.randn(12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 3.0
    st = LayerStats.zeros(FOLDS, 12, BINS, 0)
    st.update(x, fold, pos, c, pos, shuffled)
    sets = [(0,), (2,), (1, 3)]
    got = discriminant_directions(st, sets, shrinkage)  # [E, K, d, C + 1]
    for i, ex in enumerate(sets):
        kept = ~torch.isin(fold, torch.tensor(ex))
        xk = x[kept]
        cov = torch.from_numpy(np.cov(xk.numpy(), rowvar=False, bias=True))
        if shrinkage == "auto":
            sigma = optimal_linear_shrinkage(cov, int(kept.sum()))
        else:
            sigma = (1 - shrinkage) * cov + shrinkage * cov.diagonal().mean() * torch.eye(12, dtype=torch.float64)
        for k, labels in enumerate((c, shuffled)):
            lk, tk = labels[kept], pos[kept].double()
            cols = [xk[lk == b].mean(0) - xk.mean(0) for b in range(BINS)]
            cols.append(((xk - xk.mean(0)) * (tk - tk.mean())[:, None]).mean(0))
            want = torch.linalg.solve(sigma, torch.stack(cols, 1))
            torch.testing.assert_close(got[i, k], want, rtol=1e-7, atol=1e-9)


def test_second_stage_equals_scikit_learn_logistic_regression() -> None:
    r = np.random.default_rng(1)
    y = r.integers(0, 5, 3000)
    s = r.normal(size=(3000, 6)) + np.eye(5, 6)[y]
    ours = fit_logistic(torch.tensor(s), torch.tensor(y), 5, max_iter=500, tol=1e-9)
    z = StandardScaler().fit_transform(s)
    ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(z, y)
    assert torch.allclose(ours.V, torch.tensor(ref.coef_.T), atol=1e-4)
    assert (ours.predict(torch.tensor(s)).numpy() == ref.predict(z)).mean() > 0.999


def test_second_stage_reaches_the_optimum_on_collinear_scores_and_from_a_warm_start() -> None:
    """LDA-like scores: strongly correlated columns (one nearly a combination of the others), the
    case where unpreconditioned L-BFGS stopped at max_iter far from the optimum."""
    r = np.random.default_rng(2)
    y = r.integers(0, 6, 6000)
    base = r.normal(size=(6000, 3)) + np.eye(6, 3)[y] * 1.5
    mix = r.normal(size=(3, 6))
    s = base @ mix + 1e-3 * r.normal(size=(6000, 6))
    s = np.concatenate([s, -s.sum(1, keepdims=True) + 1e-4 * r.normal(size=(6000, 1))], 1)
    z = StandardScaler().fit_transform(s)
    ref = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200, tol=1e-10).fit(z, y)  # exact Newton
    cold = fit_logistic(torch.tensor(s), torch.tensor(y), 6)  # the sweep's defaults
    other = fit_logistic(torch.tensor(s[:3000]), torch.tensor(y[:3000]), 6)
    warm = fit_logistic(torch.tensor(s), torch.tensor(y), 6, init=other)
    for fit in (cold, warm):
        assert (fit.predict(torch.tensor(s)).numpy() == ref.predict(z)).mean() > 0.999
        assert torch.allclose(fit.V, torch.tensor(ref.coef_.T), atol=0.05)


def test_strong_planted_code_is_found_and_the_shuffled_control_sits_at_chance() -> None:
    acc, shuf = stacked_acc(*planted(200, 16, 3.0, seed=0))
    assert acc > 0.9
    assert abs(shuf - 1 / BINS) < 0.03  # 6400 tokens: null sd ~0.006


def test_no_signal_is_at_chance() -> None:
    acc, shuf = stacked_acc(*planted(200, 16, 0.0, seed=1))
    assert abs(acc - 1 / BINS) < 0.03 and abs(shuf - 1 / BINS) < 0.03


def test_grouped_folds_cannot_recognise_sequences() -> None:
    """Position readable only by recognising the sequence: held-out by sequence, it is at chance."""
    acc, _ = stacked_acc(*planted(120, 16, 2.0, seed=2, per_sequence_code=True))
    assert abs(acc - 1 / BINS) < 0.04


@pytest.mark.parametrize("signal", [0.4, 0.8])
def test_as_strong_as_scikit_learn_logistic_regression_on_a_non_gaussian_code(signal: float) -> None:
    """Bins on a circle (class means not on a line, so a 1-D ordinal probe fails): the stacked probe
    matches standardised multinomial logistic regression on all features, on the same folds."""
    x, pos, c, shuffled, fold = planted(160, 24, signal, seed=3)
    acc, _ = stacked_acc(x, pos, c, shuffled, fold)
    ref = sklearn_lr_acc(x, c, fold)
    assert ref > 0.3  # the signal is there
    assert acc >= ref - 0.01, (acc, ref)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_equals_scikit_learn(metric: str) -> None:
    x, _, c, shuffled, fold = planted(40, 12, 1.0, seed=4)
    ours = knn_predictions(x, fold, torch.stack([c, shuffled]), metrics=("cosine", "euclidean"))[metric]
    for j, y in enumerate((c, shuffled)):
        ref = torch.zeros_like(y)
        for f in range(FOLDS):
            tr, te = (fold != f).numpy(), (fold == f).numpy()
            sc = StandardScaler().fit(x[tr].numpy())
            knn = KNeighborsClassifier(15, metric=metric, algorithm="brute").fit(sc.transform(x[tr].numpy()), y[tr].numpy())
            ref[te] = torch.as_tensor(knn.predict(sc.transform(x[te].numpy())))
        assert torch.equal(ours[j], ref)
