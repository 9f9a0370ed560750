"""``sweep``: how much position remains at each layer, with and without each intervention.

One pass. For every intervention that changes the model (hooks), the model runs once over the
probe sequences with its hooks attached and the residual stream captured at the requested layers
(one forward per batch feeds all layers). Conditions that leave the model alone -- the baseline and
offline erasers -- share one stream of forwards and apply their transforms to the same activations.
From that single stream, per layer:

1. **moments of every token** (``stats.LayerStats``, per fold): held-out ridge ``R^2``/RMSE are
   exact from them, and so is the geometry;
2. **a seeded, bounded sample of whole sequences** (``reservoir.Reservoir``, ``sample_seqs``
   sequences, float16): the classifier probe (``stacked``: LDA from the moments, recalibrated by a
   logistic regression on held-out scores) and the position error are scored on the sampled
   tokens of each fold with the model that never saw that fold. Offline transforms are applied to
   the sample when it is scored, so one sample serves every condition of a stream.

Folds are sequences (``seq_index % folds``): no token of a test sequence is ever in training.
A shuffled-label control (positions permuted within each sequence) runs through the same pipeline
and must sit at chance. Fitted interventions (erasers) are fitted on *other* sequences than the
probes'. Memory: ``O(layers * (folds * d^2 + sample_seqs * seq_len * d))``, independent of the
number of tokens. Under ``torch.distributed``, each rank takes every ``world``-th sequence,
statistics are all-reduced and the samples gathered.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from pe_hooks.conditions import InterventionSpec, Resolved, parse_intervention, resolve_intervention
from pe_hooks.core.atomic import read_artefact, write_artefact
from pe_hooks.core.errors import ArgumentError, ArtefactError, DataError, PeHooksError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_bool, check_indices, check_int, check_model, check_number
from pe_hooks.data import load_data, stream_activations
from pe_hooks.models.precision import dtype_name
from pe_hooks.probes.geometry import geometry
from pe_hooks.probes.linear import RidgeModel, Shrinkage, fit_ridges, ridge_heldout
from pe_hooks.probes.nonlinear import SWEEP_PROBES, knn_predictions, mlp_predictions
from pe_hooks.probes.reservoir import Reservoir
from pe_hooks.probes.stacked import one_thread, stacked_predictions
from pe_hooks.probes.stats import LayerStats, label_index
from pe_hooks.sites.inspect import inspect

TOKENS = "W_E[tokens]"  # pseudo-site of the token floor
RAW_MOMENTS = "\0raw"  # key of raw moments streamed only to derive the offline erasers' ones (LayerStats.erased)
SWEEP_FORMAT = 1
SWEEP_FILES = ("sweep.csv", "sweep.json", "sweep.md", "sweep.png")  # what `pe-hooks sweep` writes


def _bins(t: torch.Tensor, n_bins: int, lo: int, hi: int) -> torch.Tensor:
    return ((t - lo) * n_bins // (hi - lo + 1)).clamp(0, n_bins - 1).long()


def _permutation(n: int, seq_index: int, seed: int) -> torch.Tensor:
    """The shuffled-label control's permutation of a sequence's ``n`` probed tokens (deterministic per
    sequence index): the stream's moments and the sample's scores use the same one."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(seq_index)))


def _shuffled_positions(pos: torch.Tensor, keep: torch.Tensor, seq_index: torch.Tensor, seed: int) -> torch.Tensor:
    """Positions permuted within each sequence (deterministic per sequence index)."""
    out = pos.clone()
    for r in range(pos.shape[0]):
        idx = torch.nonzero(keep[r]).squeeze(-1)
        out[r, idx] = pos[r, idx[_permutation(len(idx), int(seq_index[r]), seed)]]
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


def _gather(res: Reservoir, distributed: bool) -> list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]]:
    """``(seq_id, positions, {site: acts})`` of every sampled sequence (of every rank), by id."""
    rows = [(i, res.positions_of(s), res.row(s)) for s, i in enumerate(res.seq_ids)]
    if distributed:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    return sorted(rows, key=lambda r: r[0])


def _sample(rows: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]], name: str, seed: int) -> Sample:
    ys, shuffled, ids = [], [], []
    for i, pos, _ in rows:
        ys.append(pos)
        shuffled.append(pos[_permutation(len(pos), i, seed)])
        ids.append(torch.full((len(pos),), int(i)))
    x = torch.cat([acts[name].float() for _, _, acts in rows])
    return Sample(x, torch.cat(ys), torch.cat(shuffled), torch.cat(ids))


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
    sample_seqs: int = 256,
    nonlinear: Sequence[str] = SWEEP_PROBES,
    nonlinear_seqs: int = 64,
    nonlinear_layers: Sequence[int] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SweepResult:
    """Per-layer position probes under each intervention.

    Args:
        data: anything ``pe_hooks.data.load_data`` takes; ``None`` = the embedded corpus. The first
            ``n_fit`` sequences fit erasers, the next ``n_seqs`` are probed.
        interventions: ``{"name": spec}`` with spec ``None`` or a name of the intervention
            language (``pe_hooks.conditions``: ``"baseline"``, ``"zero"``, ``"remove"``,
            ``"replace:shift=3"``, ``"erase"`` (LEACE), ``"erase-mean"``, ``"erase-pca"``, ...), a hook
            list, or a callable ``(model, fit_data) -> hooks``; a list of names also works.
            Interventions that do not apply to the model are skipped with a warning.
        layers: layers to probe (``n_layers`` = the final residual); all by default.
        evaluate: score the classifier probe (accuracy, its shuffled control, chance), the position
            error (MAE) and the bin distance on the sample. ``False`` keeps the held-out ridge R²/RMSE
            (exact from the moments) and the geometry only.
        sample_seqs: probe sequences kept (a seeded reservoir, float16) to score the classifier
            probe on; memory is bounded by it whatever ``n_seqs``. The default keeps all 256 of the
            default probe sequences; with more sequences the scores use a uniform sample of them,
            while the LDA directions and ridge/geometry metrics use every token.
        nonlinear: non-linear probes scored beside the linear one, each with its shuffled control
            (``acc_<probe>``, ``acc_<probe>_shuffled``): ``"knn_cosine"``, ``"knn_euclidean"`` (15
            neighbours: the neighbourhood UMAP builds its graph from) and ``"mlp"`` (one hidden
            layer of 64 ReLU units, ``probes.nonlinear.mlp_predictions``; ~0.6 s per site on one
            core, ~2x a kNN). All three by default; ``()`` for none.
        nonlinear_seqs: the first this many sampled sequences (by index) feed the non-linear probes.
        nonlinear_layers: the probed layers that get the non-linear probes (the token floor always
            does); default: about 8 evenly spaced ones, the first and the final included
            (``ceil(n_layers / 8)`` apart) -- each costs ~1 CPU-second per condition.
        workers: threads that score the sites of a condition in parallel (each on one torch
            thread; the sites are independent, so the results do not depend on it); default: the
            CPU count, at most 4.
        exempt_first: leave position 0 / BOS out of the probes (its massive activations).
        shrinkage: covariance shrinkage of the probe's discriminant directions, ``"auto"``
            (concept-erasure's optimal linear shrinkage, chosen from the data per fold) or a fixed factor.
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
    check_int(sample_seqs, "sample_seqs", minimum=folds, fix="the sample must hold a sequence of every fold")
    check_int(nonlinear_seqs, "nonlinear_seqs", minimum=folds, fix="the non-linear probes need a sequence of every fold")
    if isinstance(nonlinear, str) or any(p not in SWEEP_PROBES for p in nonlinear):
        raise ArgumentError(f"nonlinear={nonlinear!r}: give a list of probes from {SWEEP_PROBES}, or () for none")
    check_int(seed, "seed")
    if workers is not None:
        check_int(workers, "workers", minimum=1, fix="workers is the number of scoring threads (None: the CPU count, at most 4)")
    n_workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
    check_number(alpha, "alpha", positive=True, fix="alpha is the ridge penalty (1e-3 by default)")
    if shrinkage != "auto":
        fix = "pass shrinkage='auto' (default) or a fixed factor in [0, 1]"
        if isinstance(shrinkage, str):
            raise ArgumentError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}; {fix}")
        check_number(shrinkage, "shrinkage", minimum=0.0, maximum=1.0, fix=fix)
    check_bool(exempt_first, "exempt_first")
    check_bool(token_floor, "token_floor")
    check_bool(evaluate, "evaluate")
    if n_seqs < folds:
        raise ArgumentError(
            f"n_seqs={n_seqs} sequences cannot fill folds={folds} folds (each needs at least one held-out "
            f"sequence); use n_seqs >= {folds} (256 by default) or fewer folds"
        )
    scheme = inspect(model)
    if interventions is None:
        interventions = {"baseline": None}
    if isinstance(interventions, str):  # one name, not its characters
        interventions = [interventions]
    if not isinstance(interventions, Mapping):
        interventions = {name: name for name in interventions}
    if not interventions:
        raise DataError("no interventions to run; pass e.g. ['baseline', 'zero'] (or None for the baseline)")
    for spec in interventions.values():
        if isinstance(spec, str):
            parse_intervention(spec)  # a bad name or value fails before any work
    lay = list(range(scheme.n_layers + 1)) if layers is None else check_indices(
        layers, "layers", scheme.n_layers + 1, what="probe layers"
    )
    names = [scheme.resid_hook(layer, site) if layer < scheme.n_layers else scheme.resid_hook(layer) for layer in lay]
    if nonlinear_layers is None:
        step = max(1, math.ceil(scheme.n_layers / 8))
        nl_layers = {la for la in lay if la % step == 0 or la == scheme.n_layers} | {lay[0], lay[-1], -1}
    else:
        nl_layers = set(check_indices(nonlinear_layers, "nonlinear_layers", scheme.n_layers + 1, what="probe layers")) | {-1}
        if not nl_layers - {-1} <= set(lay):
            raise ArgumentError(f"nonlinear_layers {sorted(nl_layers - {-1} - set(lay))} are not among the probed layers {lay}; "
                                "give a subset of layers=")
    # the token floor: position decoded from the token embeddings alone (no positional signal),
    # i.e. what the text itself says about position; reported as layer -1
    w_e = model.W_E.detach().float().cpu() if token_floor else None
    if w_e is not None:
        lay, names = [-1, *lay], [TOKENS, *names]
    hook_names = [n for n in names if n != TOKENS]

    needs_fit = any((isinstance(s, str) and s.startswith("erase")) or callable(s) for s in interventions.values())
    total = n_seqs + (n_fit if needs_fit else 0)
    all_data = load_data(model, data, seq_len=seq_len, n_seqs=total, seed=seed)
    # the probe sequences come first, so they are the same whether or not erasers are fitted
    probe_data = all_data.subset(list(range(n_seqs))) if needs_fit else all_data
    fit_data = all_data.subset(list(range(n_seqs, total))) if needs_fit else None
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
            resolved_all.append((name, resolve_intervention(name, spec, model, fit_data, hook_names, positions=probe_data.seq_len, seed=seed)))
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

    n_sample_tokens: dict[str, int] = {}
    # the token floor depends on the tokens only: probed once, under the first condition, and its rows
    # copied to the others
    floor_cond = groups[0][0][0] if groups else None

    def sites_of(cond: str) -> list[str]:
        return names if cond == floor_cond else hook_names

    def score_site(cond: str, resolved: Resolved, st: LayerStats, layer: int, n: str,
                   rows_sampled: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]]) -> list[dict[str, Any]]:
        """Every metric of one condition at one site (thread-safe: reads shared data only)."""
        trains = [st.train(f) for f in range(folds)]
        both = [fit_ridges(trains[f], ("real", "shuffled"), alpha) for f in range(folds)]
        ridges = [real for real, _ in both]
        per_fold: dict[str, torch.Tensor] = {}
        if rows_sampled:
            s = _sample(rows_sampled, n, seed)
            if resolved.transform is not None and n != TOKENS:
                s.x = resolved.transform(n, s.x[None], s.y[None])[0].float()
            per_fold = _score_sample(st, s, ridges, folds, n_bins, t_min, t_max, shrinkage).metrics()
            if layer in nl_layers:
                per_fold.update(_score_nonlinear(s, nonlinear, nonlinear_seqs, folds, n_bins, t_min, t_max, seed))
            n_sample_tokens[n] = len(s.y)
        r2s, rmses, r2s_shuffled = [], [], []
        for f in range(folds):
            r2, rmse = ridge_heldout(ridges[f], st.fold(f), "real")
            r2s.append(r2)
            rmses.append(rmse)
            ridge_shuffled = both[f][1]
            r2s_shuffled.append(ridge_heldout(ridge_shuffled, st.fold(f), "shuffled")[0])
        per_fold["r2"] = torch.tensor(r2s)
        per_fold["rmse"] = torch.tensor(rmses)
        per_fold["r2_shuffled"] = torch.tensor(r2s_shuffled)
        out = [{"layer": layer, "intervention": cond, "metric": metric, "value": float(vals.mean()),
                "spread": float(vals.std()) if len(vals) > 1 else 0.0} for metric, vals in per_fold.items()]
        out += [{"layer": layer, "intervention": cond, "metric": metric, "value": value, "spread": math.nan}
                for metric, value in geometry(st).items()]
        return out

    for group in tqdm(groups, desc="forward groups", disable=not progress):
        label = " + ".join(n for n, _ in group)
        hooks = group[0][1].hooks
        # offline affine erasers (LEACE, PCA) get their moments from the raw ones (LayerStats.erased,
        # exact) instead of transforming and accumulating every batch; position 0 must be out of the
        # moments, since the eraser leaves it as it is
        derived = [cond for cond, r in group if r.affine is not None and t_min >= 1
                   and all(r.affine(n) is not None for n in sites_of(cond))]
        streamed = [(cond, r) for cond, r in group if cond not in derived]
        needed = list(dict.fromkeys(n for cond in derived for n in sites_of(cond)))
        raw_key = next((cond for cond, r in streamed if r.transform is None and set(sites_of(cond)) >= set(needed)), None)
        if derived and raw_key is None:
            raw_key = RAW_MOMENTS
            streamed.append((raw_key, Resolved(HookList(label="raw"))))
        site_sets = {cond: needed if cond == RAW_MOMENTS else sites_of(cond) for cond, _ in streamed}
        stats = {cond: {n: LayerStats.zeros(folds, d, n_bins, t_max + 1) for n in site_sets[cond]} for cond, _ in streamed}
        with_floor = w_e is not None and group is groups[0]
        sample = Reservoir(sample_seqs, seed=seed, dtype=torch.float16) if evaluate else None
        for batch, tok_emb, keep, y, y_shuffled, fold in token_batches(label, hooks):
            c, c_shuffled = _bins(y, n_bins, t_min, t_max), _bins(y_shuffled, n_bins, t_min, t_max)
            for cond, resolved in streamed:
                cacts = condition_acts(batch, tok_emb, resolved)
                for n in site_sets[cond]:
                    stats[cond][n].update(cacts[n][keep], fold, y, c, y_shuffled, c_shuffled)
            if sample is not None:  # the raw stream; each condition's transform is applied when scoring
                raw = {**batch.acts, TOKENS: tok_emb} if with_floor and tok_emb is not None else dict(batch.acts)
                sample.add(raw, batch.positions, seq_ids=(batch.index * world + rank).tolist(), mask=keep)
        rows_sampled = _gather(sample, distributed) if sample is not None else []
        for cond, _ in streamed:
            for n in site_sets[cond]:
                stats[cond][n].all_reduce()
        for cond, resolved in group:
            if cond in derived:
                assert resolved.affine is not None and raw_key is not None
                stats[cond] = {n: stats[raw_key][n].erased(*resolved.affine(n)) for n in sites_of(cond)}  # type: ignore[misc]  # affine(n) checked above
        stats.pop(RAW_MOMENTS, None)
        for cond, resolved in group:
            rows_of[cond] = []
            with one_thread(), ThreadPoolExecutor(max_workers=n_workers) as pool:  # sites are independent
                jobs = [pool.submit(score_site, cond, resolved, stats[cond][n], layer, n, rows_sampled)
                        for layer, n in zip(lay, names) if n in stats[cond]]
                for job in jobs:  # in layer order
                    rows_of[cond].extend(job.result())
    if w_e is not None and floor_cond is not None:
        floor_rows = [r for r in rows_of[floor_cond] if r["layer"] == -1]
        for cond in rows_of:
            if cond != floor_cond:
                rows_of[cond] = [{**r, "intervention": cond} for r in floor_rows] + rows_of[cond]
    rows = [row for cond in interventions if cond in rows_of for row in rows_of[cond]]
    if not rows:
        raise ArgumentError(
            f"every intervention was skipped: {skipped}; pass interventions that apply to this model (the reasons above)"
        )
    df = pd.DataFrame(rows)
    chance = float(df[df.metric == "chance"].value.mean()) if evaluate else None  # None: not evaluated, never NaN
    floor = df[(df.layer == -1) & (df.metric == "acc")]
    meta = {
        "model": scheme.model_name, "dtype": dtype_name(next(model.parameters()).dtype), "site": site, "layers": lay, "seq_len": probe_data.seq_len,
        "n_seqs": len(probe_data), "n_fit": len(fit_data) if fit_data is not None else 0,
        "data": "embedded stdlib docstrings" if data is None else str(type(data).__name__),
        "n_bins": n_bins, "folds": folds, "t_min": t_min, "t_max": t_max, "chance": chance,
        "interventions": {k: (v if isinstance(v, str) or v is None else type(v).__name__) for k, v in interventions.items()},
        "skipped": skipped, "world_size": world,
        "probe": "stacked: LDA from the moments of every token + logistic regression on held-out scores (probes/stacked.py)",
        "sample_seqs": sample_seqs, "nonlinear": list(nonlinear), "nonlinear_seqs": nonlinear_seqs,
        "nonlinear_layers": sorted(nl_layers & set(lay)), "n_tokens_moments": int(sum(int(m.sum()) for m in probe_data.mask[:, t_min:])),
        "n_tokens_sample": max(n_sample_tokens.values()) if n_sample_tokens else 0,
        "token_floor_acc": float(floor.value.iloc[0]) if len(floor) else None,
    }
    return SweepResult(df, meta)


def _score_sample(
    st: LayerStats, s: Sample, ridges: list[RidgeModel], folds: int, n_bins: int, t_min: int, t_max: int,
    shrinkage: Shrinkage,
) -> FoldScores:
    """Score the sampled tokens of every fold with that fold's held-out models."""
    fold = s.ids % folds
    c, c_shuffled = _bins(s.y, n_bins, t_min, t_max), _bins(s.y_shuffled, n_bins, t_min, t_max)
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
    labels = torch.stack([_bins(s.y[keep], n_bins, t_min, t_max), _bins(s.y_shuffled[keep], n_bins, t_min, t_max)])
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
