"""Score what a stream measured: every metric of each condition at each site, as tidy rows.

From the moments (``LayerStats``, per fold): the held-out ridge ``R^2`` / RMSE (real and shuffled
labels; exact) and the geometry. From the sample: the stacked classifier probe (accuracy, its
shuffled control, chance), the position error and bin distance, each token scored with the models
of the folds it is not in; and, at the non-linear layers, the kNN / MLP probes. Sites are
independent, so they are scored in parallel threads (each on one torch thread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import torch

from pe_hooks.core.threads import limited_threads
from pe_hooks.data.labels import position_bins, sequence_permutation
from pe_hooks.probes.geometry import geometry
from pe_hooks.probes.linear import RidgeModel, Shrinkage, fit_ridges, ridge_heldout
from pe_hooks.probes.nonlinear import knn_predictions, mlp_predictions
from pe_hooks.probes.plan import Condition, Site, SweepPlan
from pe_hooks.probes.stacked import stacked_predictions
from pe_hooks.probes.stats import LayerStats, label_index
from pe_hooks.probes.stream import SampledRow, StreamMoments


@dataclass
class FoldScores:
    """Per-fold sums over the sampled tokens (each field ``[folds]``, float64)."""

    tokens: torch.Tensor
    correct: torch.Tensor  # stacked probe on the real bins
    correct_shuffled: torch.Tensor  # the same probe on the shuffled-label control
    abs_error: torch.Tensor  # |ridge prediction - position|, in tokens
    bin_error: torch.Tensor  # |predicted bin - true bin|
    majority: torch.Tensor  # tokens in the training majority bin (chance)

    @classmethod
    def zeros(cls, folds: int) -> FoldScores:
        return cls(*(torch.zeros(folds, dtype=torch.float64) for _ in fields(cls)))

    def metrics(self) -> dict[str, torch.Tensor]:
        """Per-fold accuracy, shuffled-label accuracy, MAE, bin distance and chance."""
        n = self.tokens.clamp_min(1)
        return {
            "acc": self.correct / n,
            "acc_shuffled": self.correct_shuffled / n,
            "mae": self.abs_error / n,
            "bin_distance": self.bin_error / n,
            "chance": self.majority / n,
        }


@dataclass
class Sample:
    """The sampled sequences' tokens of one site, sorted by sequence id: ``x`` ``[n, d]`` float32,
    positions ``y``, shuffled-control positions ``y_shuffled`` and sequence ids ``ids``."""

    x: torch.Tensor
    y: torch.Tensor
    y_shuffled: torch.Tensor
    ids: torch.Tensor


def score_stream(plan: SweepPlan, moments: StreamMoments, conditions: Sequence[Condition]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each condition, its sites in layer order; ``{condition: rows}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for cond in conditions:
        stats = moments.stats[cond.name]
        with limited_threads(1), ThreadPoolExecutor(max_workers=plan.opts.n_workers) as pool:  # sites are independent
            jobs = [pool.submit(score_site, plan, cond, stats[s], s, moments.sample) for s in plan.sites if s in stats]
            out[cond.name] = [row for job in jobs for row in job.result()]  # in layer order
    return out


def score_site(plan: SweepPlan, cond: Condition, st: LayerStats, site: Site, sampled: list[SampledRow]) -> list[dict[str, Any]]:
    """Every metric of one condition at one site (thread-safe: reads shared data only)."""
    o = plan.opts
    t_min, t_max = o.t_min, plan.t_max
    trains = [st.train(f) for f in range(o.folds)]
    both = [fit_ridges(trains[f], ("real", "shuffled"), o.alpha) for f in range(o.folds)]
    ridges = [real for real, _ in both]
    per_fold: dict[str, torch.Tensor] = {}
    if sampled:
        s = sample_of(sampled, site, o.seed)
        transform = cond.resolved.transform
        if transform is not None and site.hook is not None:
            s.x = transform(site.hook, s.x[None], s.y[None])[0].float()
        per_fold = _score_sample(st, s, ridges, o.folds, o.n_bins, t_min, t_max, o.shrinkage).metrics()
        if site.layer in plan.nonlinear_layers:
            per_fold.update(_score_nonlinear(s, o.nonlinear, o.nonlinear_seqs, o.folds, o.n_bins, t_min, t_max, o.seed))
    r2s, rmses, r2s_shuffled = [], [], []
    for f in range(o.folds):
        r2, rmse = ridge_heldout(ridges[f], st.fold(f), "real")
        r2s.append(r2)
        rmses.append(rmse)
        r2s_shuffled.append(ridge_heldout(both[f][1], st.fold(f), "shuffled")[0])
    per_fold["r2"] = torch.tensor(r2s)
    per_fold["rmse"] = torch.tensor(rmses)
    per_fold["r2_shuffled"] = torch.tensor(r2s_shuffled)
    out = [{"layer": site.layer, "intervention": cond.name, "metric": metric, "value": float(vals.mean()),
            "spread": float(vals.std()) if len(vals) > 1 else 0.0} for metric, vals in per_fold.items()]
    out += [{"layer": site.layer, "intervention": cond.name, "metric": metric, "value": value, "spread": math.nan}
            for metric, value in geometry(st).items()]
    return out


def sample_of(rows: list[SampledRow], site: Site, seed: int) -> Sample:
    """The sampled tokens of ``site``, with the shuffled control's positions of each sequence."""
    ys, shuffled, ids = [], [], []
    for i, pos, _ in rows:
        ys.append(pos)
        shuffled.append(pos[sequence_permutation(len(pos), i, seed)])
        ids.append(torch.full((len(pos),), int(i)))
    x = torch.cat([acts[site].float() for _, _, acts in rows])
    return Sample(x, torch.cat(ys), torch.cat(shuffled), torch.cat(ids))


def _score_sample(
    st: LayerStats, s: Sample, ridges: list[RidgeModel], folds: int, n_bins: int, t_min: int, t_max: int,
    shrinkage: Shrinkage,
) -> FoldScores:
    """Score the sampled tokens of every fold with that fold's held-out models."""
    fold = s.ids % folds
    c, c_shuffled = position_bins(s.y, n_bins, t_min, t_max), position_bins(s.y_shuffled, n_bins, t_min, t_max)
    pred = stacked_predictions(st, s.x, fold, torch.stack([c, c_shuffled]), shrinkage=shrinkage)
    out = FoldScores.zeros(folds)
    for f in range(folds):
        m = fold == f
        if not bool(m.any()):
            continue
        majority_bin = int(st.train(f).cn[0, label_index("real")].argmax())
        out.tokens[f] = float(m.sum())
        out.correct[f] = float((pred[0, m] == c[m]).sum())
        out.correct_shuffled[f] = float((pred[1, m] == c_shuffled[m]).sum())
        out.abs_error[f] = float((ridges[f].predict(s.x[m]) - s.y[m].double()).abs().sum())
        out.bin_error[f] = float((pred[0, m] - c[m]).abs().sum())
        out.majority[f] = float((c[m] == majority_bin).sum())
    return out


def _score_nonlinear(
    s: Sample, probes: Sequence[str], n_seqs: int, folds: int, n_bins: int, t_min: int, t_max: int, seed: int,
) -> dict[str, torch.Tensor]:
    """Per-fold held-out accuracy of each non-linear probe (and its shuffled control) on the first
    ``n_seqs`` sampled sequences."""
    if not probes:
        return {}
    keep = torch.isin(s.ids, torch.unique(s.ids)[:n_seqs])
    x, ids = s.x[keep], s.ids[keep]
    fold = ids % folds
    labels = torch.stack([position_bins(s.y[keep], n_bins, t_min, t_max),
                          position_bins(s.y_shuffled[keep], n_bins, t_min, t_max)])
    out: dict[str, torch.Tensor] = {}
    knn = [p.removeprefix("knn_") for p in probes if p.startswith("knn_")]
    preds = {f"knn_{m}": v for m, v in knn_predictions(x, fold, labels, metrics=knn).items()} if knn else {}
    if "mlp" in probes:
        preds["mlp"] = mlp_predictions(x, fold, labels, seed=seed)
    for probe in probes:
        pred = preds[probe]
        for j, suffix in enumerate(("", "_shuffled")):
            out[f"acc_{probe}{suffix}"] = torch.tensor([
                float((pred[j][fold == f] == labels[j][fold == f]).float().mean()) if bool((fold == f).any()) else math.nan
                for f in range(folds)
            ])
    return out
