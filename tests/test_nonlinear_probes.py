"""kNN and MLP position probes: known answers on planted data, grouping by sequence, bounded reservoir."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pe_hooks.core.errors import DataError
from pe_hooks.probes.nonlinear import (
    Reservoir,
    bin_positions,
    probe_positions,
    shuffle_within_groups,
    training_standardisation,
)

T, D, BINS = 24, 12, 4
CHANCE = 1 / BINS


def stream(n_seqs: int, signal: float, seed: int, offsets: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[n, T, d]`` tokens: a non-linear position code (the bin picks a point on a circle in dims
    0-1, so no single linear direction orders it) of strength ``signal``, plus noise, plus an
    optional per-sequence random offset."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.arange(1, T + 1).repeat(n_seqs, 1)
    b = (pos - 1) * BINS // T
    ang = 2 * torch.pi * b.float() / BINS
    x = torch.randn(n_seqs, T, D, generator=g)
    x[..., 0] += signal * torch.cos(ang)
    x[..., 1] += signal * torch.sin(ang)
    x += offsets * torch.randn(n_seqs, 1, D, generator=g)
    return x, pos, torch.arange(n_seqs)


def flat(x: torch.Tensor, pos: torch.Tensor, ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return x.reshape(-1, D).numpy(), pos.reshape(-1).numpy(), ids[:, None].expand_as(pos).reshape(-1).numpy()


PROBES = ("knn_cosine", "knn_euclidean", "mlp")


def test_strong_signal_near_one_and_shuffled_near_chance() -> None:
    r = probe_positions(*flat(*stream(80, 6.0, seed=0)), n_bins=BINS, probes=PROBES)
    for s in r.values():
        assert s.accuracy > 0.9, s
        assert abs(s.shuffled - CHANCE) < 0.05, s
        assert s.chance == pytest.approx(CHANCE) and s.n_seqs == 80 and s.n_tokens == 80 * T


def test_no_signal_near_chance() -> None:
    r = probe_positions(*flat(*stream(80, 0.0, seed=1)), n_bins=BINS, probes=PROBES)
    for s in r.values():
        assert abs(s.accuracy - CHANCE) < 0.05, s
        assert abs(s.shuffled - CHANCE) < 0.05, s


def test_held_out_by_sequence() -> None:
    """Each (sequence, bin) gets its own random code: position is only decodable by recognising
    the sequence. Grouped folds give chance; token-level folds (every token its own group, i.e.
    sequences leaking across folds) give a near-perfect kNN."""
    g = torch.Generator().manual_seed(2)
    n = 60
    pos = torch.arange(1, T + 1).repeat(n, 1)
    b = (pos - 1) * BINS // T
    codes = 3 * torch.randn(n, BINS, D, generator=g)
    x = codes[torch.arange(n)[:, None], b] + 0.3 * torch.randn(n, T, D, generator=g)
    xa, pa, ga = flat(x, pos, torch.arange(n))
    grouped = probe_positions(xa, pa, ga, n_bins=BINS, probes=("knn_euclidean",), k=5)["knn_euclidean"]
    leaky = probe_positions(xa, pa, np.arange(len(pa)), n_bins=BINS, probes=("knn_euclidean",), k=5)["knn_euclidean"]
    assert abs(grouped.accuracy - CHANCE) < 0.06, grouped
    assert leaky.accuracy > 0.9, leaky


def test_shuffle_keeps_each_sequence_labels() -> None:
    y = bin_positions(np.tile(np.arange(1, T + 1), 5), T, BINS)
    g = np.repeat(np.arange(5), T)
    ys = shuffle_within_groups(y, g, seed=0)
    assert not np.array_equal(ys, y)
    for s in range(5):
        assert sorted(ys[g == s]) == sorted(y[g == s])


def test_reservoir_bounded_and_deterministic() -> None:
    def run(seed: int, n_batches: int) -> Reservoir:
        res = Reservoir(max_seqs=10, seed=seed)
        for i in range(n_batches):
            x, pos, _ = stream(8, 1.0, seed=100 + i)
            res.add({"a": x, "b": 2 * x}, pos, seq_ids=range(8 * i, 8 * i + 8))
        return res

    sizes = []
    res = Reservoir(max_seqs=10, seed=0)
    for i in range(12):
        x, pos, _ = stream(8, 1.0, seed=100 + i)
        res.add({"a": x, "b": 2 * x}, pos, seq_ids=range(8 * i, 8 * i + 8))
        sizes.append(res.nbytes)
    assert len(res) == 10 and res.n_seen == 96 and res.n_tokens == 10 * T
    assert len(set(sizes[2:])) == 1  # full after 2 batches, then constant
    xa, _pa, ga = res.arrays("a")
    xb, _, gb = res.arrays("b")
    assert np.array_equal(ga, gb) and np.allclose(xb, 2 * xa)  # the same sequences in every layer
    assert len(np.unique(ga)) == 10 and ga.max() > 40  # later batches were sampled too
    a1, a2, a3 = run(0, 12).arrays("a"), run(0, 12).arrays("a"), run(1, 12).arrays("a")
    assert all(np.array_equal(u, v) for u, v in zip(a1, a2, strict=True))
    assert not np.array_equal(a1[2], a3[2])


def test_reservoir_mask_and_uniform_sampling() -> None:
    counts = np.zeros(40)
    for seed in range(200):
        res = Reservoir(max_seqs=5, seed=seed)
        for i in range(5):
            res.add(torch.zeros(8, 3, 2), torch.arange(3).repeat(8, 1), seq_ids=range(8 * i, 8 * i + 8))
        counts[np.unique(res.arrays()[2])] += 1
    # each of 40 sequences kept with probability 5/40 -> 25 of 200 runs
    assert counts.min() > 8 and counts.max() < 45
    res = Reservoir(max_seqs=3)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    res.add(torch.ones(2, 3, 4), torch.tensor([[0, 1, 0], [0, 0, 0]]), mask=mask)
    assert res.n_tokens == 3


def test_bad_input() -> None:
    xa, pa, ga = flat(*stream(6, 1.0, seed=3))
    with pytest.raises(DataError, match="n_folds"):
        probe_positions(xa, pa, np.zeros_like(ga), n_bins=BINS)
    bad = xa.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        probe_positions(bad, pa, ga)
    with pytest.raises(DataError, match="unknown probes"):
        probe_positions(xa, pa, ga, probes=("svm",))
    with pytest.raises(DataError, match="shape"):
        probe_positions(xa, pa[:-1], ga)
    with pytest.raises(DataError, match="batch, seq, d"):
        Reservoir(4).add(torch.zeros(2, 3), torch.zeros(2, 3))


def test_training_standardisation_matches_each_folds_complement() -> None:
    # a dimension with a mean of 1e3 and unit spread: E[x^2] - E[x]^2 in float32 would lose it
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=gen)
    x[:, 0] = x[:, 0] + 1000.0
    x[:, 1] = x[:, 1] * 1e-8  # (near-)constant: floored at 1e-6
    fold = torch.randint(0, 3, (600,), generator=gen)
    fold[fold == 2] = 1  # fold 2 empty: its complement is every token
    mean, sd = training_standardisation(x, fold, 3)
    for f in range(3):
        tr = x[fold != f].double()
        torch.testing.assert_close(mean[f], tr.mean(0).float(), rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(sd[f], tr.std(0, correction=0).clamp_min(1e-6).float(), rtol=1e-5, atol=1e-6)
    assert float(sd[0, 0]) == pytest.approx(1.0, abs=0.1)


def test_mlp_without_fused_adam_still_finds_the_planted_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch < 2.4 has no fused Adam on CPU (``fused=True`` raises): the probe falls back to plain Adam."""
    real_adam = torch.optim.Adam
    calls: list[bool] = []

    def old_adam(params: object, **kwargs: object) -> torch.optim.Optimizer:
        calls.append(bool(kwargs.get("fused")))
        if kwargs.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices: ['cuda']")
        return real_adam(params, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.optim, "Adam", old_adam)
    r = probe_positions(*flat(*stream(80, 6.0, seed=0)), n_bins=BINS, probes=("mlp",))
    assert calls == [True, False]
    assert r["mlp"].accuracy > 0.9 and abs(r["mlp"].shuffled - CHANCE) < 0.05
