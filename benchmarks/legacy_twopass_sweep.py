"""The two-pass sweep as it was before the one-pass redesign (git 254d786), kept only so
``benchmarks/sweep_speed.py`` can time it beside the new one. Not part of the library.

``sweep``: how much position remains at each layer, with and without each intervention.

For every intervention that changes the model (hooks), the model runs over the probe sequences with
its hooks attached and the residual stream captured at the requested layers (one forward per batch
feeds all layers). Conditions that leave the model alone — the baseline and offline erasers — share
one stream of forwards and apply their transforms to the same captured activations. Two passes:

1. **fit**: per layer and fold, sufficient statistics (``stats.LayerStats``); ridge ``R^2``/RMSE
   on held-out folds are exact from them, and so is the geometry;
2. **evaluate**: the same forwards again, scoring every token with the model of the fold it was
   held out from (classification accuracy, mean absolute error, bin distance).

Folds are sequences (``seq_index % folds``): no token of a test sequence is ever in training.
A shuffled-label control (positions permuted within each sequence) runs through the same pipeline
and must sit at chance. Fitted interventions (erasers) are fitted on *other* sequences than the
probes'. Memory: ``O(layers * folds * d^2)``, independent of the number of tokens. Under
``torch.distributed``, each rank takes every ``world``-th sequence and statistics are all-reduced.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from pe_hooks.conditions import BUILTIN, InterventionSpec, Resolved, resolve_intervention
from pe_hooks.core.atomic import read_artefact, write_artefact
from pe_hooks.core.errors import ArgumentError, ArtefactError, DataError, PeHooksError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_indices, check_int, check_model
from pe_hooks.data import load_data, stream_activations
from pe_hooks.probes.geometry import geometry
from pe_hooks.probes.linear import LDAModel, RidgeModel, Shrinkage, fit_lda, fit_ridge, ridge_heldout
from pe_hooks.probes.stats import LayerStats, label_index
from pe_hooks.sites.inspect import inspect

TOKENS = "W_E[tokens]"
SWEEP_FORMAT = 1
SWEEP_FILES = ("sweep.csv", "sweep.json", "sweep.md", "sweep.png")  # what `pe-hooks sweep` writes  # pseudo-site of the token floor


def _bins(t: torch.Tensor, n_bins: int, lo: int, hi: int) -> torch.Tensor:
    return ((t - lo) * n_bins // (hi - lo + 1)).clamp(0, n_bins - 1).long()


def _shuffled_positions(pos: torch.Tensor, keep: torch.Tensor, seq_index: torch.Tensor, seed: int) -> torch.Tensor:
    """Positions permuted within each sequence (deterministic per sequence index)."""
    out = pos.clone()
    for r in range(pos.shape[0]):
        g = torch.Generator().manual_seed(seed * 1_000_003 + int(seq_index[r]))
        idx = torch.nonzero(keep[r]).squeeze(-1)
        out[r, idx] = pos[r, idx[torch.randperm(len(idx), generator=g)]]
    return out


@dataclass
class SweepResult:
    """Tidy results: ``df`` has columns layer, intervention, metric, value, spread; ``meta`` says
    how they were obtained. Pictures: ``pe_hooks.viz.plot_sweep(result)``; Markdown:
    ``pe_hooks.reports.sweep_markdown(result)``."""

    df: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def pivot(self, metric: str = "acc") -> pd.DataFrame:
        """One metric as a table: layers as rows, interventions as columns."""
        sub = self.df[(self.df.metric == metric) & (self.df.layer >= 0)]
        return sub.pivot_table(index="layer", columns="intervention", values="value", sort=False)

    def save(self, folder: str | Path, extra: Callable[[Path], Any] | None = None) -> dict[str, Path]:
        """Write the data, ``sweep.csv`` and ``sweep.json`` (meta + rows), into ``folder``, atomically.

        The folder appears complete (with a completeness marker and the format version) or not at
        all: an earlier result saved there is replaced whole, never mixed with new files.
        ``extra(tmp_folder)`` may write more files (a report, a figure) into the same artefact.
        """
        out = Path(folder)
        with write_artefact(out, "sweep result", SWEEP_FORMAT, replaces=SWEEP_FILES) as tmp:
            self.df.to_csv(tmp / "sweep.csv", index=False)
            (tmp / "sweep.json").write_text(json.dumps(
                {"format": SWEEP_FORMAT, "meta": self.meta, "rows": self.df.to_dict(orient="records")}, indent=1, default=str
            ))
            if extra is not None:
                extra(tmp)
        return {"csv": out / "sweep.csv", "json": out / "sweep.json"}

    @classmethod
    def load(cls, folder: str | Path) -> SweepResult:
        """Read what ``save`` wrote (``ArtefactError`` if it is missing, incomplete or corrupt)."""
        fix = "run the sweep again and save it with result.save(folder)"
        read_artefact(folder, "sweep result", SWEEP_FORMAT, fix=fix)
        try:
            data = json.loads((Path(folder) / "sweep.json").read_text())
            return cls(pd.DataFrame(data["rows"]), data["meta"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtefactError(f"{folder} holds a corrupt sweep result ({type(exc).__name__}: {exc}); {fix}") from exc


@dataclass
class FoldProbes:
    """The probes of one fold, fitted on every other fold."""

    ridge: RidgeModel
    lda_real: LDAModel | None = None
    lda_shuffled: LDAModel | None = None

    @classmethod
    def fit(cls, train: LayerStats, alpha: float, shrinkage: Shrinkage, with_lda: bool) -> FoldProbes:
        ridge = fit_ridge(train, "real", alpha)
        if not with_lda:
            return cls(ridge)
        return cls(ridge, fit_lda(train, "real", shrinkage), fit_lda(train, "shuffled", shrinkage))


@dataclass
class FoldScores:
    """Per-fold sums of the evaluation pass (each field ``[folds]``, float64)."""

    tokens: torch.Tensor
    correct: torch.Tensor  # LDA on the real bins
    correct_shuffled: torch.Tensor  # LDA on the shuffled-label control
    abs_error: torch.Tensor  # |ridge prediction - position|, in tokens
    bin_error: torch.Tensor  # |predicted bin - true bin|
    majority: torch.Tensor  # tokens in the training majority bin (chance)

    @classmethod
    def zeros(cls, folds: int) -> FoldScores:
        return cls(*(torch.zeros(folds, dtype=torch.float64) for _ in fields(cls)))

    def add(
        self, f: int, probes: FoldProbes, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, c_shuffled: torch.Tensor,
        majority_bin: int,
    ) -> None:
        """Score the held-out tokens ``x`` of fold ``f`` (positions ``y``, bins ``c``)."""
        assert probes.lda_real is not None and probes.lda_shuffled is not None
        pred = probes.lda_real.predict(x)
        self.tokens[f] += int(x.shape[0])
        self.correct[f] += float((pred == c).sum())
        self.correct_shuffled[f] += float((probes.lda_shuffled.predict(x) == c_shuffled).sum())
        self.abs_error[f] += float((probes.ridge.predict(x) - y.double()).abs().sum())
        self.bin_error[f] += float((pred - c).abs().sum())
        self.majority[f] += float((c == majority_bin).sum())

    def all_reduce(self) -> None:
        import torch.distributed as dist

        for f in fields(self):
            dist.all_reduce(getattr(self, f.name), op=dist.ReduceOp.SUM)

    def metrics(self) -> dict[str, torch.Tensor]:
        """Per-fold accuracy, shuffled-label accuracy, MAE, bin distance and chance."""
        n = self.tokens
        return {
            "acc": self.correct / n,
            "acc_shuffled": self.correct_shuffled / n,
            "mae": self.abs_error / n,
            "bin_distance": self.bin_error / n,
            "chance": self.majority / n,
        }


def sweep(
    model: Model,
    data: Any = None,
    interventions: Mapping[str, InterventionSpec] | Sequence[str] | None = None,
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_pre",
    seq_len: int = 64,
    n_seqs: int = 256,
    n_fit: int = 128,
    n_bins: int = 8,
    folds: int = 4,
    batch_size: int = 16,
    exempt_first: bool = True,
    alpha: float = 1e-3,
    shrinkage: Shrinkage = "auto",
    seed: int = 0,
    token_floor: bool = True,
    evaluate: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Per-layer position probes under each intervention.

    Args:
        data: anything ``pe_hooks.data.load_data`` takes; ``None`` = the embedded corpus. The first
            ``n_fit`` sequences fit erasers, the next ``n_seqs`` are probed.
        interventions: ``{"name": spec}`` with spec ``None``/``"baseline"``, ``"zero"``,
            ``"remove"``, ``"erase"`` (LEACE), ``"erase-mean"``, ``"erase-pca"``, a hook list, or a
            callable ``(model, fit_data) -> hooks``; a list of built-in names also works.
            Interventions that do not apply to the model are skipped with a warning.
        layers: layers to probe (``n_layers`` = the final residual); all by default.
        evaluate: run the second pass that scores every token (accuracy, MAE, bin distance). With
            ``False`` the sweep is one pass: held-out ridge R²/RMSE (exact from the moments) and the
            geometry only — about half the cost.
        exempt_first: leave position 0 / BOS out of the probes (its massive activations).
        shrinkage: LDA shrinkage, ``"auto"`` (chosen from the data per fold) or a fixed factor.
        token_floor: also probe the token embeddings alone (``W_E[token_ids]``, reported as layer -1):
            how much position the text itself gives away, the floor no eraser can go below.

    Returns:
        ``SweepResult`` (``.df``, ``.pivot()``, ``.save()``); draw it with
        ``pe_hooks.viz.plot_sweep``, write Markdown with ``pe_hooks.reports.sweep_markdown``.
    """
    check_model(model, "sweep")
    check_int(seq_len, "seq_len", minimum=3)
    check_int(n_seqs, "n_seqs", minimum=1, fix="probe at least `folds` sequences")
    check_int(n_fit, "n_fit", minimum=1)
    check_int(folds, "folds", minimum=2, fix="the probes are scored on held-out folds")
    check_int(n_bins, "n_bins", minimum=2, fix="accuracy needs at least 2 position bins")
    check_int(batch_size, "batch_size", minimum=1)
    if n_seqs < folds:
        raise ArgumentError(
            f"n_seqs={n_seqs} sequences cannot fill folds={folds} folds (each needs at least one held-out "
            f"sequence); use n_seqs >= {folds} (256 by default) or fewer folds"
        )
    scheme = inspect(model)
    if interventions is None:
        interventions = {"baseline": None}
    if not isinstance(interventions, Mapping):
        interventions = {name: name for name in interventions}
    if not interventions:
        raise DataError("no interventions to run")
    typos = [s for s in interventions.values() if isinstance(s, str) and s not in BUILTIN]
    if typos:
        raise DataError(f"unknown intervention(s) {typos}; built-in: {', '.join(BUILTIN)}")
    lay = list(range(scheme.n_layers + 1)) if layers is None else check_indices(
        layers, "layers", scheme.n_layers + 1, what="probe layers"
    )
    names = [scheme.resid_hook(layer, site) if layer < scheme.n_layers else scheme.resid_hook(layer) for layer in lay]
    # the token floor: position decoded from the token embeddings alone (no positional signal),
    # i.e. what the text itself says about position; reported as layer -1
    w_e = model.W_E.detach().float().cpu() if token_floor else None
    if w_e is not None:
        lay, names = [-1, *lay], [TOKENS, *names]
    hook_names = [n for n in names if n != TOKENS]

    needs_fit = any((isinstance(s, str) and s.startswith("erase")) or callable(s) for s in interventions.values())
    total = n_seqs + (n_fit if needs_fit else 0)
    all_data = load_data(model, data, seq_len=seq_len, n_seqs=total, seed=seed)
    fit_data, probe_data = all_data.split(n_fit) if needs_fit else (None, all_data)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    mine = probe_data.subset(list(range(rank, len(probe_data), world)))
    t_min = 1 if exempt_first else 0
    t_max = probe_data.seq_len - 1
    if n_bins > t_max - t_min + 1:
        raise ArgumentError(
            f"n_bins={n_bins} is more than the {t_max - t_min + 1} probed positions of {probe_data.seq_len}-token "
            f"sequences{' (position 0 exempt)' if exempt_first else ''}: some bins would stay empty; "
            f"use n_bins <= {t_max - t_min + 1} or longer sequences"
        )
    if len(probe_data) < folds:
        raise ArgumentError(f"only {len(probe_data)} probe sequences for {folds} folds; give more data or fewer folds")
    d = scheme.d_model
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    resolved_all: list[tuple[str, Resolved]] = []
    for name, spec in interventions.items():
        try:
            resolved_all.append((name, resolve_intervention(name, spec, model, fit_data, hook_names)))
        except PeHooksError as exc:
            warnings.warn(f"sweep: skipping '{name}': {exc}", stacklevel=2)
            skipped[name] = str(exc)
    # Conditions that leave the model alone (baseline, offline erasers) share one stream of forwards:
    # each applies its own transform to the same captured activations. Conditions with hooks change
    # the model and run their own forwards.
    shared = [(n, r) for n, r in resolved_all if len(r.hooks) == 0]
    groups = ([shared] if shared else []) + [[(n, r)] for n, r in resolved_all if len(r.hooks) > 0]
    rows_of: dict[str, list[dict[str, Any]]] = {}

    def token_batches(desc: str, hooks: HookList) -> Any:
        for batch in stream_activations(model, mine, hook_names, batch_size=batch_size, hooks=hooks, progress=progress, desc=desc):
            seq_index = batch.index * world + rank
            keep = batch.mask.bool() & (batch.positions >= t_min)
            shuffled = _shuffled_positions(batch.positions, keep, seq_index, seed)
            fold = (seq_index % folds)[:, None].expand_as(batch.positions)
            tok_emb = w_e[batch.tokens] if w_e is not None else None  # once per batch, shared by all conditions
            yield batch, tok_emb, keep, batch.positions[keep], shuffled[keep], fold[keep]

    def condition_acts(batch: Any, tok_emb: torch.Tensor | None, resolved: Resolved) -> dict[str, torch.Tensor]:
        """One condition's activations of ``batch`` (its offline transform, if any, applied), plus the
        token-floor pseudo-site, which depends on the tokens only (computed once per batch)."""
        acts = dict(batch.acts) if resolved.transform is None else {
            n: resolved.transform(n, a, batch.positions) for n, a in batch.acts.items()
        }
        if tok_emb is not None:
            acts[TOKENS] = tok_emb
        return acts

    for group in tqdm(groups, desc="forward groups", disable=not progress):
        label = " + ".join(n for n, _ in group)
        hooks = group[0][1].hooks
        stats = {cond: {n: LayerStats.zeros(folds, d, n_bins, t_max + 1) for n in names} for cond, _ in group}
        for batch, tok_emb, keep, y, y_shuffled, fold in token_batches(f"{label}: fit", hooks):
            c, c_shuffled = _bins(y, n_bins, t_min, t_max), _bins(y_shuffled, n_bins, t_min, t_max)
            for cond, resolved in group:
                cacts = condition_acts(batch, tok_emb, resolved)
                for n in names:
                    stats[cond][n].update(cacts[n][keep], fold, y, c, y_shuffled, c_shuffled)
        probes: dict[str, dict[str, list[FoldProbes]]] = {}
        scores: dict[str, dict[str, FoldScores]] = {}
        majority: dict[str, dict[str, list[int]]] = {}
        for cond, _ in group:
            for n in names:
                stats[cond][n].all_reduce()
            probes[cond] = {
                n: [FoldProbes.fit(stats[cond][n].train(f), alpha, shrinkage, evaluate) for f in range(folds)]
                for n in names
            }
            scores[cond] = {n: FoldScores.zeros(folds) for n in names}
            majority[cond] = {
                n: [int(stats[cond][n].train(f).cn[0, label_index("real")].argmax()) for f in range(folds)]
                for n in names
            }
        for batch, tok_emb, keep, y, y_shuffled, fold in (token_batches(f"{label}: evaluate", hooks) if evaluate else ()):
            c, c_shuffled = _bins(y, n_bins, t_min, t_max), _bins(y_shuffled, n_bins, t_min, t_max)
            for cond, resolved in group:
                cacts = condition_acts(batch, tok_emb, resolved)
                for n in names:
                    x = cacts[n][keep]
                    for f in torch.unique(fold).tolist():
                        m = fold == f
                        scores[cond][n].add(f, probes[cond][n][f], x[m], y[m], c[m], c_shuffled[m], majority[cond][n][f])
        for cond, _ in group:
            rows_of[cond] = []
            for n in names:
                if distributed:
                    scores[cond][n].all_reduce()
            for layer, n in zip(lay, names):
                st = stats[cond][n]
                per_fold = scores[cond][n].metrics() if evaluate else {}
                r2s, rmses, r2s_shuffled = [], [], []
                for f in range(folds):
                    r2, rmse = ridge_heldout(probes[cond][n][f].ridge, st.fold(f), "real")
                    r2s.append(r2)
                    rmses.append(rmse)
                    ridge_shuffled = fit_ridge(st.train(f), "shuffled", alpha)
                    r2s_shuffled.append(ridge_heldout(ridge_shuffled, st.fold(f), "shuffled")[0])
                per_fold["r2"] = torch.tensor(r2s)
                per_fold["rmse"] = torch.tensor(rmses)
                per_fold["r2_shuffled"] = torch.tensor(r2s_shuffled)
                for metric, vals in per_fold.items():
                    rows_of[cond].append({"layer": layer, "intervention": cond, "metric": metric, "value": float(vals.mean()),
                                          "spread": float(vals.std()) if len(vals) > 1 else 0.0})
                for metric, value in geometry(st).items():
                    rows_of[cond].append({"layer": layer, "intervention": cond, "metric": metric, "value": value,
                                          "spread": math.nan})
    rows = [row for cond in interventions if cond in rows_of for row in rows_of[cond]]
    if not rows:
        raise PeHooksError(f"every intervention was skipped: {skipped}")
    df = pd.DataFrame(rows)
    chance = float(df[df.metric == "chance"].value.mean()) if evaluate else float("nan")
    floor = df[(df.layer == -1) & (df.metric == "acc")]
    meta = {
        "model": scheme.model_name, "site": site, "layers": lay, "seq_len": probe_data.seq_len,
        "n_seqs": len(probe_data), "n_fit": len(fit_data) if fit_data is not None else 0,
        "data": "embedded stdlib docstrings" if data is None else str(type(data).__name__),
        "n_bins": n_bins, "folds": folds, "t_min": t_min, "t_max": t_max, "chance": chance,
        "interventions": {k: (v if isinstance(v, str) or v is None else type(v).__name__) for k, v in interventions.items()},
        "skipped": skipped, "world_size": world,
        "token_floor_acc": float(floor.value.iloc[0]) if len(floor) else None,
    }
    return SweepResult(df, meta)
