"""Non-linear position probes, held out by sequence, on a bounded sample of whole sequences.

UMAP builds a k-nearest-neighbour graph; LEACE only guarantees that no *linear* probe beats a
constant. These probes ask what a neighbourhood (kNN) or a small non-linear classifier (MLP) can
still read of position.

- ``Reservoir`` (``pe_hooks.probes.reservoir``): a seeded, bounded sample of whole sequences.
- ``probe_positions``: predicts position bins (positions ``1..T`` in ``n_bins`` equal-width bins,
  position 0 / BOS excluded) with
  ``"linear"`` (logistic regression), ``"knn_cosine"`` / ``"knn_euclidean"``
  (``KNeighborsClassifier``, ``k`` neighbours, distance-weighted off) and ``"mlp"``
  (``mlp_predictions``: one hidden layer of ReLU units, trained in torch, fixed seed), every one on
  features standardised with the training fold's statistics. Scored with ``GroupKFold`` by sequence id: no sequence has tokens
  on both sides of a split, so a probe cannot succeed by recognising the sequence (neighbours
  from the same text sit at nearby positions by construction).

Controls reported beside each held-out accuracy:

- ``chance``: ``max(1 / n_bins, majority-bin rate)`` (the bins of ``1..T`` need not be equal).
- ``shuffled``: the same probe, same folds, after permuting the positions *within each sequence*.
  Every sequence keeps exactly its multiset of positions, so the marginal label distribution (and
  each fold's, and each sequence's) is unchanged, and the grouping is unchanged; only the link
  between a token's activation and its position is broken. (Permuting whole sequences' label
  vectors would be the identity here, since every sequence covers the same positions; permuting
  across all tokens would also change the per-sequence label counts.) It should sit at chance:
  above chance it measures how much the probe gains from the fold structure alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pe_hooks.core.errors import DataError
from pe_hooks.core.threads import limited_threads
from pe_hooks.data.labels import position_bins, shuffle_within_groups
from pe_hooks.probes.reservoir import Reservoir

PROBES = ("linear", "knn_cosine", "knn_euclidean", "mlp")

#: The non-linear probes a sweep can add beside its linear one (``sweep(nonlinear=...)``).
SWEEP_PROBES = ("knn_cosine", "knn_euclidean", "mlp")

__all__ = ["PROBES", "SWEEP_PROBES", "ProbeScore", "Reservoir", "bin_positions", "knn_predictions", "mlp_predictions",
           "probe_positions", "shuffle_within_groups"]


@dataclass
class ProbeScore:
    """Held-out accuracy of one probe with its controls."""

    probe: str
    accuracy: float
    chance: float
    shuffled: float
    n_tokens: int
    n_seqs: int
    n_folds: int
    n_bins: int
    seconds: float = 0.0  # wall time of both fits (real and shuffled labels), all folds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bin_positions(positions: np.ndarray, max_position: int, n_bins: int) -> np.ndarray:
    """``floor((t - 1) * n_bins / max_position)`` for positions ``1..max_position``
    (``pe_hooks.data.labels.position_bins``)."""
    return position_bins(torch.from_numpy(np.asarray(positions, dtype=np.int64)), n_bins, 1, max_position).numpy()


def _make(probe: str, seed: int, k: int, hidden: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if probe == "linear":
        return LogisticRegression(C=0.1, max_iter=100)
    if probe == "knn_cosine":
        return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    if probe == "knn_euclidean":
        return KNeighborsClassifier(n_neighbors=k, metric="euclidean", algorithm="brute")
    raise DataError(f"unknown probe '{probe}'; use one of {PROBES}")


def _heldout(probe: str, x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], seed: int,
             k: int, hidden: int) -> float:
    correct = 0
    for tr, te in folds:
        correct += int((_fit_predict(probe, x, y, tr, te, seed, k, hidden) == y[te]).sum())
    return correct / sum(len(te) for _, te in folds)


def probe_positions(
    x: Any, positions: Any, seq_ids: Any, *, n_bins: int = 8, max_position: int | None = None,
    probes: Sequence[str] = ("knn_cosine", "knn_euclidean", "mlp"), n_folds: int = 4, k: int = 15,
    hidden: int = 64, seed: int = 0, threads: int | None = 1,
) -> dict[str, ProbeScore]:
    """Held-out (grouped by ``seq_ids``) accuracy of each probe at predicting the position bin.

    ``x`` ``[n, d]``, integer ``positions`` ``[n]`` and ``seq_ids`` ``[n]`` (e.g. from
    ``Reservoir.arrays``). Tokens at position 0 are dropped. Returns ``{probe: ProbeScore}``.

    ``threads``: torch and BLAS/OpenMP threads while fitting (``core.threads.limited_threads``) (default 1; ``None`` leaves them alone). On a
    busy 2-core machine one thread was ~50x faster than the default pool for the logistic and
    MLP probes (200 s -> 3 s for 8 fits at d=576, 4.5k tokens), because of oversubscription.
    """
    from sklearn.model_selection import GroupKFold

    xa = np.asarray(x, dtype=np.float32)
    pa = np.asarray(positions)
    ga = np.asarray(seq_ids)
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise DataError(f"x must be a non-empty [n, d] array, got shape {xa.shape}")
    if pa.shape != (xa.shape[0],) or ga.shape != (xa.shape[0],):
        raise DataError(f"positions and seq_ids must have shape [{xa.shape[0]}], got {pa.shape} and {ga.shape}")
    if not np.isfinite(xa).all():
        raise DataError("x contains NaN or inf")
    bad = [p for p in probes if p not in PROBES]
    if bad:
        raise DataError(f"unknown probes {bad}; use any of {PROBES}")
    keep = pa > 0
    xa, pa, ga = xa[keep], pa[keep].astype(np.int64), ga[keep]
    T = int(pa.max()) if max_position is None else int(max_position)
    if int(pa.max()) > T:
        raise DataError(f"position {int(pa.max())} exceeds max_position {T}")
    n_groups = len(np.unique(ga))
    if n_groups < n_folds:
        raise DataError(f"need at least n_folds={n_folds} sequences, got {n_groups}: stream more data or lower n_folds")
    y = bin_positions(pa, T, n_bins)
    y_shuf = shuffle_within_groups(y, ga, seed)
    counts = np.bincount(y, minlength=n_bins)
    chance = max(1.0 / n_bins, float(counts.max()) / len(y))
    folds = list(GroupKFold(n_splits=n_folds).split(xa, y, ga))
    out = {}
    for p in probes:
        t0 = time.perf_counter()
        if p == "mlp":  # torch, every fold and both label sets in one batched model
            fold_id = np.zeros(len(y), dtype=np.int64)
            for f, (_, te) in enumerate(folds):
                fold_id[te] = f
            with limited_threads(threads):
                pred = mlp_predictions(torch.from_numpy(xa), torch.from_numpy(fold_id),
                                       torch.from_numpy(np.stack([y, y_shuf])), hidden=hidden, seed=seed).numpy()
            acc, shuf = float((pred[0] == y).mean()), float((pred[1] == y_shuf).mean())
        else:
            with limited_threads(threads):
                acc = _heldout(p, xa, y, folds, seed, k, hidden)
                shuf = _heldout(p, xa, y_shuf, folds, seed, k, hidden)
        out[p] = ProbeScore(p, acc, chance, shuf, len(y), n_groups, n_folds, n_bins, time.perf_counter() - t0)
    return out


def training_standardisation(x: torch.Tensor, fold: torch.Tensor, n_folds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (``[n_folds, d]``, population, floored at ``1e-6``) of the tokens
    of every fold but ``f``, for each ``f``: from per-fold sums, one product each (``Tensor.std``
    over the token axis is ~10x slower on one CPU thread). A fold without training tokens gets
    every token's statistics. Sums in float64: ``E[x^2] - E[x]^2`` cancels badly in float32 on
    dimensions with a large mean (the massive activations of some residual dimensions)."""
    xf = x.double()
    fo = torch.nn.functional.one_hot(fold, n_folds).to(xf.dtype)  # [n, F]
    cnt, s1, s2 = fo.sum(0)[:, None], fo.T @ xf, fo.T @ (xf * xf)
    tr_n = cnt.sum() - cnt
    empty = tr_n[:, 0] == 0
    tr_s1, tr_s2 = s1.sum(0) - s1, s2.sum(0) - s2
    tr_s1[empty], tr_s2[empty], tr_n[empty] = s1.sum(0), s2.sum(0), cnt.sum()
    mean = tr_s1 / tr_n
    sd = (tr_s2 / tr_n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float(), sd.float()


def knn_predictions(
    x: torch.Tensor, fold: torch.Tensor, labels: torch.Tensor, *, metrics: Sequence[str] = ("cosine", "euclidean"),
    k: int = 15,
) -> dict[str, torch.Tensor]:
    """Held-out kNN predictions ``{metric: [K, n]}`` for every label set in ``labels`` ``[K, n]``
    (e.g. real and shuffled bins): each token of fold ``f`` takes the majority label (ties: the
    smallest) of its ``k`` nearest tokens among the other folds, on features standardised with
    those folds' statistics; ``metrics`` from ``"cosine"``, ``"euclidean"`` (brute force, as
    scikit-learn's ``KNeighborsClassifier(algorithm="brute")``). One product ``A B^T`` per fold
    serves both metrics, and the neighbours do not depend on the labels, so one search serves
    every label set."""
    bad = [m for m in metrics if m not in ("cosine", "euclidean")]
    if bad:
        raise DataError(f"unknown kNN metric(s) {bad}; use 'cosine' and/or 'euclidean'")
    n_classes = int(labels.max()) + 1
    out = {m: torch.zeros_like(labels) for m in metrics}
    xf = x.float()
    means, sds = training_standardisation(xf, fold, int(fold.max()) + 1)
    for f in torch.unique(fold).tolist():
        te, tr = fold == f, fold != f
        if not bool(tr.any()):
            raise DataError("kNN needs tokens of at least two folds")
        mean, sd = means[f], sds[f]
        a, b = (xf[te] - mean) / sd, (xf[tr] - mean) / sd
        dot = a @ b.T
        b_sq = (b * b).sum(-1)
        for metric in metrics:
            if metric == "cosine":  # larger = nearer
                score = dot / (a.norm(dim=-1, keepdim=True).clamp_min(1e-12) * b_sq.sqrt().clamp_min(1e-12)[None])
            else:  # -|a - b|^2 + |a|^2: the same order as the distance
                score = 2 * dot - b_sq[None]
            idx = score.topk(min(k, int(tr.sum())), dim=-1).indices
            for j in range(labels.shape[0]):
                votes = torch.nn.functional.one_hot(labels[j][tr][idx], n_classes).sum(1)
                out[metric][j, te] = votes.argmax(-1)  # first maximum = smallest label on ties
    return out


def mlp_predictions(
    x: torch.Tensor, fold: torch.Tensor, labels: torch.Tensor, *, hidden: int = 64, seed: int = 0,
    epochs: int = 5, min_steps: int = 100, lr: float = 1e-2, batch_size: int = 256,
) -> torch.Tensor:
    """Held-out predictions ``[K, n]`` of a small MLP (one hidden layer of ``hidden`` ReLU units,
    softmax over the bins) for every label set in ``labels`` ``[K, n]``, on features standardised
    with each training fold's statistics.

    One network per (fold, label set), all trained at once as one batched model: each sees only
    the tokens of the other folds (its loss is masked), so fold ``f``'s predictions come from a
    network that never saw fold ``f``'s sequences. Adam (``lr``), minibatches of ``batch_size``
    tokens, ``epochs`` passes over the data but at least ``min_steps`` steps; the standardisation
    is folded into the first layer (``((x - m) / s) W = x (W / s) - (m / s) W``), so one product
    per step serves every network. Seeded, and run on the calling thread's torch threads.

    Measured on SmolLM2 residual states (``python -m benchmarks.mlp_probe``: 64 sequences x 63
    tokens, 4 grouped folds, layers 2/16/24, raw and LEACE-erased): held-out accuracy -0.009 to
    +0.031 (mean +0.013) against scikit-learn's ``MLPClassifier(64, early_stopping=True)`` on the
    same folds, 4.9-6.6x faster.
    """
    F, K = int(fold.max()) + 1, labels.shape[0]
    n_classes = int(labels.max()) + 1
    xf = x.detach().float().clone()  # a normal tensor even if x was made under inference_mode
    n, d = xf.shape
    gen = torch.Generator().manual_seed(seed)
    nets = [(f, k) for f in range(F) for k in range(K)]
    train = torch.stack([fold != f for f, _ in nets]).float()  # [B, n]
    targets = torch.stack([labels[k] for _, k in nets]).long()  # [B, n]
    tr_mean, tr_sd = training_standardisation(xf, fold, F)
    mu = torch.stack([tr_mean[f] for f, _ in nets])  # [B, d]
    sd = torch.stack([tr_sd[f] for f, _ in nets])
    mu_sd = mu / sd  # the standardised origin, folded into the first layer's bias
    B = len(nets)
    W1 = (torch.randn(B, d, hidden, generator=gen) * (2.0 / (d + hidden)) ** 0.5).requires_grad_()
    b1 = torch.zeros(B, hidden, requires_grad=True)
    W2 = (torch.randn(B, hidden, n_classes, generator=gen) * (2.0 / (hidden + n_classes)) ** 0.5).requires_grad_()
    b2 = torch.zeros(B, n_classes, requires_grad=True)

    def logits(xb: torch.Tensor) -> torch.Tensor:
        w = (W1 / sd[:, :, None]).permute(1, 0, 2).reshape(d, B * hidden)  # every network's first layer side by side
        b = b1 - torch.einsum("bd,bdh->bh", mu_sd, W1)
        h = torch.relu((xb @ w).view(-1, B, hidden).transpose(0, 1) + b[:, None])  # [B, n, hidden]
        return torch.baddbmm(b2[:, None], h, W2)

    steps_per_epoch = max(1, math.ceil(n / batch_size))
    n_epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    with torch.enable_grad():
        try:  # the fused kernel: ~20% of the MLP's time saved on CPU
            opt = torch.optim.Adam([W1, b1, W2, b2], lr=lr, fused=True)
        except RuntimeError:  # torch < 2.4 has no fused Adam on CPU
            opt = torch.optim.Adam([W1, b1, W2, b2], lr=lr)
        for _ in range(n_epochs):
            order = torch.randperm(n, generator=gen)
            xe, me, te = xf[order], train[:, order], targets[:, order]  # one gather per epoch
            for i in range(0, n, batch_size):
                out = logits(xe[i:i + batch_size])
                m = me[:, i:i + batch_size]
                # classes on dim 1 ([B, C, n]): ~4x faster on CPU than flattening to [B n, C]
                ce = torch.nn.functional.cross_entropy(out.permute(0, 2, 1), te[:, i:i + batch_size], reduction="none")
                loss = ((ce * m).sum(1) / m.sum(1).clamp_min(1)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
    with torch.no_grad():
        pred = logits(xf).argmax(-1)  # [B, n]
    out_pred = torch.zeros_like(labels)
    for b, (f, k) in enumerate(nets):
        te = fold == f
        out_pred[k, te] = pred[b, te].to(out_pred.dtype)
    return out_pred


def _fit_predict(probe: str, x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, seed: int, k: int,
                 hidden: int) -> np.ndarray:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x[tr])
    clf = _make(probe, seed, k, hidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(sc.transform(x[tr]), y[tr])
    return np.asarray(clf.predict(sc.transform(x[te])))
