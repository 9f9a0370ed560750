"""``sweep``: how much position remains at each layer, with and without each intervention.

For every intervention, the model runs over the probe sequences with the intervention's hooks
attached and the residual stream captured at the requested layers (one forward per batch feeds
all layers). Two passes:

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

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from pe_hooks.data import TokenData, load_data, stream_activations
from pe_hooks.errors import DataError, PeHooksError
from pe_hooks.interventions.hooklist import HookList
from pe_hooks.probes.geometry import geometry
from pe_hooks.probes.linear import fit_lda, fit_ridge, ridge_heldout
from pe_hooks.probes.stats import LayerStats
from pe_hooks.sites import inspect
from pe_hooks.types import Model

InterventionSpec = None | str | Sequence[tuple[str, Any]] | Callable[[Model, TokenData], Sequence[tuple[str, Any]]]

BUILTIN = ("baseline", "zero", "remove", "erase", "erase-mean", "erase-pca", "erase-inmodel")
TOKENS = "W_E[tokens]"  # pseudo-site of the token floor


@dataclass
class Resolved:
    """An intervention ready to run: hooks inside the model and/or an offline transform applied to
    the captured activations ``(hook_name, x, positions) -> x`` (erasers applied per layer)."""

    hooks: HookList
    transform: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def resolve_intervention(
    name: str, spec: InterventionSpec, model: Model, fit_data: TokenData | None, probe_sites: list[str] | None = None
) -> Resolved:
    """Turn a sweep intervention spec into hooks / a transform (fitting erasers on ``fit_data``).

    ``"erase"``, ``"erase-mean"``, ``"erase-pca"`` fit an eraser per probed layer on clean states and
    apply it *offline* to that layer's captured activations (is position still linearly present in
    the latents after removal?). ``"erase-inmodel"`` runs the LEACE eraser hooks inside the model at
    every layer instead (later layers then see erased inputs).
    """
    if spec is None:
        return Resolved(HookList(label=name))
    if isinstance(spec, str):
        from pe_hooks import interventions as iv

        if spec == "baseline":
            return Resolved(HookList(label="baseline"))
        if spec in ("zero", "remove"):
            return Resolved(getattr(iv, spec)(model))
        if spec.startswith("erase"):
            from pe_hooks.erasers import fit_eraser

            if fit_data is None:
                raise DataError("erasers need fit data disjoint from the probe data (n_fit > 0)")
            method = {"erase": "leace", "erase-mean": "mean", "erase-pca": "pca", "erase-inmodel": "leace"}.get(spec)
            if method is None:
                raise DataError(f"unknown intervention '{spec}'; built-in: {', '.join(BUILTIN)}")
            if spec == "erase-inmodel":
                return Resolved(fit_eraser(model, fit_data, method=method, progress=False).hooks(model))
            eraser = fit_eraser(model, fit_data, method=method, progress=False, hook_names=probe_sites)

            def transform(hook_name: str, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
                if hook_name not in eraser.maps:
                    return x
                out: torch.Tensor = eraser.transform(x, hook_name=hook_name, positions=positions)
                return out

            return Resolved(HookList(label=spec), transform)
        raise DataError(f"unknown intervention '{spec}'; built-in: {', '.join(BUILTIN)}")
    if callable(spec):
        return Resolved(HookList(spec(model, fit_data), label=name))  # type: ignore[arg-type]
    return Resolved(HookList(spec, label=name))


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
    """Tidy results: ``df`` has columns layer, intervention, metric, value, spread."""

    df: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def pivot(self, metric: str = "acc") -> pd.DataFrame:
        sub = self.df[(self.df.metric == metric) & (self.df.layer >= 0)]
        return sub.pivot_table(index="layer", columns="intervention", values="value", sort=False)

    def table(self, metric: str = "acc", digits: int = 3) -> str:
        """Markdown table of one metric (layers as rows, interventions as columns)."""
        piv = self.pivot(metric)
        cols = list(piv.columns)
        lines = ["| layer | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for layer, row in piv.iterrows():
            lines.append(f"| {layer} | " + " | ".join(f"{row[c]:.{digits}f}" for c in cols) + " |")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None) -> Any:
        from pe_hooks.viz.sweep_plot import plot_sweep

        return plot_sweep(self, path)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``sweep.csv``, ``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``folder``."""
        import json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "sweep.csv", "json": out / "sweep.json", "md": out / "sweep.md", "png": out / "sweep.png"}
        self.df.to_csv(paths["csv"], index=False)
        paths["json"].write_text(json.dumps({"meta": self.meta, "rows": self.df.to_dict(orient="records")}, indent=1, default=str))
        paths["md"].write_text(self.markdown())
        self.plot(paths["png"])
        return paths

    def markdown(self) -> str:
        m = self.meta
        parts = [
            f"# Position probes per layer: {m.get('model')}",
            "",
            f"Data: {m.get('n_seqs')} probe sequences x {m.get('seq_len')} tokens ({m.get('data')}), "
            f"{m.get('n_fit')} other sequences to fit erasers; site `{m.get('site')}`; positions "
            f"{m.get('t_min')}..{m.get('t_max')} in {m.get('n_bins')} bins; {m.get('folds')}-fold splits grouped "
            "by sequence; linear discriminant (accuracy) and ridge (R^2) probes; shuffled-label control.",
            "",
        ]
        sections = [
            ("acc", f"Held-out accuracy of binned position (chance ~{m.get('chance', float('nan')):.3f}; "
                    f"token floor {m.get('token_floor_acc') or float('nan'):.3f})"),
            ("acc_shuffled", "Shuffled-label control (must be at chance)"),
            ("r2", "Held-out R^2 of the position index (ridge)"),
            ("mae", "Mean absolute error of the predicted position, in tokens"),
            ("anova_r2", "Fraction of residual variance explained by position"),
            ("rel_norm", "Relative norm of the positional part (Song & Zhong)"),
            ("pos_ctx_cos", "Mean cosine of the principal angles between the positional (bin means) and content subspaces"),
            ("pos_ctx_cos_null", "... the same for shuffled position labels (the noise level to compare with)"),
        ]
        have = set(self.df.metric)
        for metric, title in sections:
            if metric in have:
                parts += [f"## {title}", "", self.table(metric), ""]
        skipped = m.get("skipped") or {}
        for name, why in skipped.items():
            parts.append(f"- `{name}` skipped: {why}")
        return "\n".join(parts) + "\n"


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
    exclude_first: bool = True,
    alpha: float = 1e-3,
    shrinkage: float = 0.1,
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
        token_floor: also probe the token embeddings alone (``W_E[token_ids]``, reported as layer -1):
            how much position the text itself gives away, the floor no eraser can go below.

    Returns:
        ``SweepResult`` (``.df``, ``.table()``, ``.plot()``, ``.save()``).
    """
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
    lay = list(range(scheme.n_layers + 1)) if layers is None else list(layers)
    for layer in lay:
        if not 0 <= layer <= scheme.n_layers:
            raise IndexError(f"layer {layer} does not exist: probe layers 0..{scheme.n_layers} ({scheme.n_layers} = final)")
    if folds < 2:
        raise DataError("folds must be at least 2")
    names = [scheme.resid_hook(layer, site) if layer < scheme.n_layers else scheme.resid_hook(layer) for layer in lay]
    # the token floor: position decoded from the token embeddings alone (no positional signal),
    # i.e. what the text itself says about position; reported as layer -1
    w_e = model.W_E.detach().float().cpu() if token_floor else None
    if w_e is not None:
        lay, names = [-1, *lay], [TOKENS, *names]
    hook_names = [n for n in names if n != TOKENS]

    def acts(batch: Any, n: str) -> torch.Tensor:
        return w_e[batch.tokens] if n == TOKENS else batch.acts[n]  # type: ignore[index]

    needs_fit = any((isinstance(s, str) and s.startswith("erase")) or callable(s) for s in interventions.values())
    total = n_seqs + (n_fit if needs_fit else 0)
    all_data = load_data(model, data, seq_len=seq_len, n_seqs=total, seed=seed)
    fit_data, probe_data = all_data.split(n_fit) if needs_fit else (None, all_data)
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    mine = probe_data.subset(list(range(rank, len(probe_data), world)))
    t_min = 1 if exclude_first else 0
    t_max = probe_data.seq_len - 1
    d = scheme.d_model
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name, spec in tqdm(list(interventions.items()), desc="interventions", disable=not progress):
        try:
            resolved = resolve_intervention(name, spec, model, fit_data, hook_names)
        except PeHooksError as exc:
            warnings.warn(f"sweep: skipping '{name}': {exc}", stacklevel=2)
            skipped[name] = str(exc)
            continue
        stats = {n: LayerStats.zeros(folds, d, n_bins, t_max + 1) for n in names}

        def token_batches(desc: str, resolved: Resolved = resolved) -> Any:
            for batch in stream_activations(model, mine, hook_names, batch_size=batch_size, hooks=resolved.hooks, progress=progress, desc=desc):
                if resolved.transform is not None:
                    batch.acts = {n: resolved.transform(n, a, batch.positions) for n, a in batch.acts.items()}
                seq_index = batch.index * world + rank
                keep = batch.mask.bool() & (batch.positions >= t_min)
                shuf = _shuffled_positions(batch.positions, keep, seq_index, seed)
                fold = (seq_index % folds)[:, None].expand_as(batch.positions)
                yield batch, keep, batch.positions[keep], shuf[keep], fold[keep]

        for batch, keep, y, ys, fold in token_batches(f"{name}: fit"):
            c, cs = _bins(y, n_bins, t_min, t_max), _bins(ys, n_bins, t_min, t_max)
            for n in names:
                stats[n].update(acts(batch, n)[keep], fold, y, c, ys, cs)
        for n in names:
            stats[n].all_reduce()
        models = {
            n: [(fit_ridge(stats[n].train(f), 0, alpha),
                 *((fit_lda(stats[n].train(f), 0, shrinkage), fit_lda(stats[n].train(f), 1, shrinkage)) if evaluate else ()))
                for f in range(folds)]
            for n in names
        }
        # per layer, per fold: tokens, correct, correct (shuffled), |err| sum, |bin err| sum, majority hits
        acc = {n: torch.zeros(folds, 6, dtype=torch.float64) for n in names}
        majority = {n: [int(stats[n].train(f).cn[0, 0].argmax()) for f in range(folds)] for n in names}
        for batch, keep, y, ys, fold in (token_batches(f"{name}: evaluate") if evaluate else ()):
            c, cs = _bins(y, n_bins, t_min, t_max), _bins(ys, n_bins, t_min, t_max)
            for n in names:
                x = acts(batch, n)[keep]
                for f in torch.unique(fold).tolist():
                    m = fold == f
                    ridge, lda, lda_s = models[n][f]
                    xf = x[m]
                    pred = lda.predict(xf)
                    a = acc[n][f]
                    a[0] += int(m.sum())
                    a[1] += float((pred == c[m]).sum())
                    a[2] += float((lda_s.predict(xf) == cs[m]).sum())
                    a[3] += float((ridge.predict(xf) - y[m].double()).abs().sum())
                    a[4] += float((pred - c[m]).abs().sum())
                    a[5] += float((c[m] == majority[n][f]).sum())
        for n in names:
            if distributed:
                dist.all_reduce(acc[n], op=dist.ReduceOp.SUM)
        for layer, n in zip(lay, names):
            a = acc[n]
            per_fold = {
                "acc": a[:, 1] / a[:, 0],
                "acc_shuffled": a[:, 2] / a[:, 0],
                "mae": a[:, 3] / a[:, 0],
                "bin_distance": a[:, 4] / a[:, 0],
                "chance": a[:, 5] / a[:, 0],
            } if evaluate else {}
            r2s, rmses, r2_shuf = [], [], []
            for f in range(folds):
                ridge = models[n][f][0]
                r2, rmse = ridge_heldout(ridge, stats[n].fold(f), 0)
                r2s.append(r2)
                rmses.append(rmse)
                r2_shuf.append(ridge_heldout(fit_ridge(stats[n].train(f), 1, alpha), stats[n].fold(f), 1)[0])
            per_fold["r2"] = torch.tensor(r2s)
            per_fold["rmse"] = torch.tensor(rmses)
            per_fold["r2_shuffled"] = torch.tensor(r2_shuf)
            for metric, vals in per_fold.items():
                rows.append({"layer": layer, "intervention": name, "metric": metric,
                             "value": float(vals.mean()), "spread": float(vals.std()) if len(vals) > 1 else 0.0})
            for metric, value in geometry(stats[n]).items():
                rows.append({"layer": layer, "intervention": name, "metric": metric, "value": value, "spread": math.nan})
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
