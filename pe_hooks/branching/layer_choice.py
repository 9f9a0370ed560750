"""Which layer to look at: where position is measurably strongest in the branch latents.

``layer_scores`` measures, at every layer, how much of the branch latents' variance a *shared*
positional path explains on branches that did not estimate it (held-out positional share), and the
path ratio of ``pe_hooks.branching.scores``; ``choose_layers`` picks the top layers.

**Held-out positional share.** Standardise the latents of a layer (``z``). Split the tokens into
folds: by prompt when there are two or more prompts (the path must be shared across *content*, not
just across samples of one prompt), otherwise by branch (``n_folds`` interleaved groups). For a
token ``i`` of fold ``f`` at position ``t``, with ``m_{-f}(t)`` the mean of ``z`` over the other
folds' tokens in the same position bin (``bin_width`` consecutive positions) and ``g_{-f}`` the
other folds' grand mean::

    share = 1 - sum_i ||z_i - m_{-f(i)}(t_i)||^2 / sum_i ||z_i - g_{-f(i)}||^2

over the tokens whose bin the other folds cover. It is the out-of-sample R^2 of predicting a
token's latent from its position alone: 0 = position tells nothing shared about the latent (or
only what the estimation noise of the means costs, which makes it negative); 1 = every token sits
on one path. Tokens never estimate their own prediction, so it does not inflate with noise.

**Held-out position R^2** (``position_r2``): a ridge regression of the position index on ``z``
(an intercept, penalty ``alpha * n`` for ``n`` training tokens), fitted on the other folds and
scored on each fold: ``1 - sum (t_i - t_hat_i)^2 / sum (t_i - mean_{-f}(t))^2``. It says whether
position can be *read* from the latents, however little of their variance it takes; the share
says whether it *organises* them (what a UMAP shows).

**Choice** (``choose_layers``): the layers with the highest share among those where it is
measurable; if no layer's share is measurable, the layers where position is most decodable
(highest ``position_r2``), and ``choice_reason`` says so.

**Null.** The same share with the positions permuted across tokens (``n_null`` seeded draws; the
folds are kept): what the estimate reads when position carries nothing (slightly negative, the
cost of estimating the bin means). A layer's share is *measurable* when it exceeds the largest
null draw and the null mean by at least ``MIN_SHARE`` (one percent of the variance).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from pe_hooks.branching.scores import path_ratio
from pe_hooks.core.errors import DataError
from pe_hooks.core.linalg import ridge_from_moments

#: The least held-out share (above its null) that counts as a positional path.
MIN_SHARE = 0.01


def position_folds(branch: np.ndarray, prompt: np.ndarray | None, n_folds: int = 4) -> np.ndarray:
    """Fold id per token: the prompt if there are two or more, else interleaved branch groups."""
    branch = np.asarray(branch)
    if prompt is not None and len(np.unique(prompt)) >= 2:
        return np.unique(np.asarray(prompt), return_inverse=True)[1]
    ids, inv = np.unique(branch, return_inverse=True)
    if len(ids) < 2:
        raise DataError("need at least two branches (or two prompts) to hold some out")
    return np.asarray(inv % min(n_folds, len(ids)))


def heldout_position_share(
    x: np.ndarray, position: np.ndarray, folds: np.ndarray, *, bin_width: int = 1, standardize: bool = True
) -> float:
    """The held-out positional share of the module docstring (``nan`` if no token can be scored)."""
    z = np.asarray(x, dtype=np.float64)
    if standardize:
        z = StandardScaler().fit_transform(z)
    bins = (np.asarray(position) // max(1, bin_width)).astype(np.int64)
    bins -= bins.min()
    folds = np.asarray(folds)
    n_bins = int(bins.max()) + 1
    # per-(fold, bin) sums and counts
    fold_ids = np.unique(folds)
    sums = np.zeros((len(fold_ids), n_bins, z.shape[1]))
    cnt = np.zeros((len(fold_ids), n_bins))
    fi = np.searchsorted(fold_ids, folds)
    np.add.at(sums, (fi, bins), z)
    np.add.at(cnt, (fi, bins), 1.0)
    resid = total = 0.0
    for f in range(len(fold_ids)):
        rest_s, rest_n = sums.sum(0) - sums[f], cnt.sum(0) - cnt[f]
        mine = fi == f
        ok = mine & (rest_n[bins] > 0)
        if not ok.any():
            continue
        means = rest_s / np.maximum(rest_n, 1)[:, None]
        grand = rest_s.sum(0) / rest_n.sum()
        resid += float(((z[ok] - means[bins[ok]]) ** 2).sum())
        total += float(((z[ok] - grand) ** 2).sum())
    return 1.0 - resid / total if total > 0 else float("nan")


def heldout_position_r2(z: np.ndarray, position: np.ndarray, folds: np.ndarray, *, alpha: float = 0.3) -> float:
    """The held-out ridge R^2 of position of the module docstring (``z`` already standardised)."""
    zt = torch.from_numpy(np.asarray(z, dtype=np.float64))
    y = torch.from_numpy(np.asarray(position, dtype=np.float64))
    folds = np.asarray(folds)
    masks = [torch.from_numpy(folds == f) for f in np.unique(folds)]
    # per-fold moments (n, sum z, sum y, z^T z, z^T y); a fold's training moments = all - its own
    moments = [(float(m.sum()), zt[m].sum(0), y[m].sum(), zt[m].T @ zt[m], zt[m].T @ y[m]) for m in masks]
    total_moments = [sum(parts) for parts in zip(*moments)]
    resid = total = 0.0
    for mine, own in zip(masks, moments):
        n, sx, sy, sxx, sxy = (a - b for a, b in zip(total_moments, own))
        if n == 0:
            continue
        ((w, b),) = ridge_from_moments(n, sx, sy[None], sxx, sxy[None], alpha, standardize=False)
        resid += float(((zt[mine] @ w + b - y[mine]) ** 2).sum())
        total += float(((y[mine] - y[~mine].mean()) ** 2).sum())
    return 1.0 - resid / total if total > 0 else float("nan")


def layer_scores(
    latents: Mapping[int, np.ndarray],
    keep: Mapping[int, np.ndarray],
    branch: np.ndarray,
    position: np.ndarray,
    prompt: np.ndarray | None = None,
    *,
    bin_width: int = 4,
    n_null: int = 4,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per layer: ``position_share`` (held-out) with its null (``position_share_null``:
    mean of ``n_null`` position-shuffled draws; ``position_share_null_max``), ``measurable``
    (see the module docstring), ``position_r2`` (held-out ridge), ``path_ratio`` of the raw
    latents, and the number of tokens scored.
    ``keep[layer]`` selects the rows of that layer (as ``BranchLatents.keep``)."""
    rows = []
    for layer in sorted(latents):
        k = np.asarray(keep[layer])
        b, t = np.asarray(branch)[k], np.asarray(position)[k]
        folds = position_folds(b, None if prompt is None else np.asarray(prompt)[k])
        z = StandardScaler().fit_transform(np.asarray(latents[layer][k], dtype=np.float64))
        share = heldout_position_share(z, t, folds, bin_width=bin_width, standardize=False)
        rng = np.random.default_rng(seed)
        null = np.array([
            heldout_position_share(z, rng.permutation(t), folds, bin_width=bin_width, standardize=False)
            for _ in range(n_null)
        ]) if n_null > 0 else np.array([np.nan])
        rows.append({
            "layer": layer,
            "position_share": share,
            "position_share_null": float(null.mean()),
            "position_share_null_max": float(null.max()),
            "measurable": bool(share > null.max() and share >= null.mean() + MIN_SHARE) if n_null > 0
            else bool(share >= MIN_SHARE),
            "position_r2": heldout_position_r2(z, t, folds),
            "path_ratio": path_ratio(z, b, t),
            "tokens": int(k.sum()),
        })
    return pd.DataFrame(rows)


def choose_layers(scores: pd.DataFrame, n: int = 1) -> list[int]:
    """The ``n`` layers of the module docstring's choice rule, in layer order."""
    if scores.empty:
        raise DataError("no layer scores to choose from")
    measurable = scores[scores["measurable"]]
    if len(measurable):
        ranked = measurable.sort_values("position_share", ascending=False, kind="stable")
    else:
        ranked = scores.sort_values("position_r2", ascending=False, kind="stable")
    return sorted(int(v) for v in ranked["layer"].head(max(1, n)))


def choice_reason(scores: pd.DataFrame, chosen: list[int]) -> str:
    """One sentence: which layers ``choose_layers`` took and on what evidence."""
    rows = scores.set_index("layer").loc[chosen]
    what = ", ".join(
        f"{layer} (share {r.position_share:.3f} vs null {r.position_share_null:.3f}; R^2 {r.position_r2:.2f})"
        for layer, r in rows.iterrows()
    )
    if bool(scores["measurable"].any()):
        return (f"auto chose layer {what}: there a shared positional path explains the largest held-out share "
                "of the latents' variance.")
    best = scores.loc[(scores["position_share"] - scores["position_share_null"]).idxmax()]
    return (f"auto chose layer {what}: at no layer does a shared positional path explain a measurable share "
            f"of the latents' variance (best: layer {int(best.layer)}, {best.position_share:.3f} vs null "
            f"{best.position_share_null:.3f}), so it took the layer where position is most decodable "
            "(held-out ridge R^2).")
