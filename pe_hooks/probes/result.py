"""``SweepResult``: the tidy rows of a sweep and how they were obtained (``meta``), saved and loaded
as one artefact; ``sweep_result`` assembles it from a plan and the rows of its conditions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pe_hooks.core.atomic import read_artefact, write_artefact
from pe_hooks.core.errors import ArgumentError, ArtefactError
from pe_hooks.models.precision import dtype_name
from pe_hooks.probes.plan import SweepPlan

SWEEP_FORMAT = 1
SWEEP_FILES = ("sweep.csv", "sweep.json", "sweep.md", "sweep.png")  # what `pe-hooks sweep` writes
PROBE = "stacked: LDA from the moments of every token + logistic regression on held-out scores (probes/stacked.py)"


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


def sweep_result(plan: SweepPlan, rows_of: dict[str, list[dict[str, Any]]], n_tokens_sample: int) -> SweepResult:
    """The ``SweepResult`` of a plan from the rows of each condition: the token floor, probed once,
    is copied to every condition, and the conditions come in the order they were given."""
    floor_cond = plan.streams[0].conditions[0].name if plan.streams and plan.w_e is not None else None
    if floor_cond is not None:
        floor_rows = [r for r in rows_of[floor_cond] if r["layer"] == -1]
        for cond in rows_of:
            if cond != floor_cond:
                rows_of[cond] = [{**r, "intervention": cond} for r in floor_rows] + rows_of[cond]
    rows = [row for cond in plan.interventions if cond in rows_of for row in rows_of[cond]]
    if not rows:
        raise ArgumentError(
            f"every intervention was skipped: {plan.skipped}; pass interventions that apply to this model (the reasons above)"
        )
    df = pd.DataFrame(rows)
    return SweepResult(df, _meta(plan, df, n_tokens_sample))


def _meta(plan: SweepPlan, df: pd.DataFrame, n_tokens_sample: int) -> dict[str, Any]:
    o, t_min = plan.opts, plan.opts.t_min
    chance = float(df[df.metric == "chance"].value.mean()) if o.evaluate else None  # None: not evaluated, never NaN
    floor = df[(df.layer == -1) & (df.metric == "acc")]
    layers = [s.layer for s in plan.sites]
    return {
        "model": plan.scheme.model_name, "dtype": dtype_name(next(plan.model.parameters()).dtype), "site": o.site,
        "layers": layers, "seq_len": plan.probe_data.seq_len, "n_seqs": len(plan.probe_data),
        "n_fit": len(plan.fit_data) if plan.fit_data is not None else 0, "data": plan.data_label,
        "n_bins": o.n_bins, "folds": o.folds, "t_min": t_min, "t_max": plan.t_max, "chance": chance,
        "interventions": {k: (v if isinstance(v, str) or v is None else type(v).__name__)
                          for k, v in plan.interventions.items()},
        "skipped": plan.skipped, "world_size": plan.world, "probe": PROBE,
        "sample_seqs": o.sample_seqs, "nonlinear": list(o.nonlinear), "nonlinear_seqs": o.nonlinear_seqs,
        "nonlinear_layers": sorted(plan.nonlinear_layers & set(layers)),
        "n_tokens_moments": int(sum(int(m.sum()) for m in plan.probe_data.mask[:, t_min:])),
        "n_tokens_sample": n_tokens_sample,
        "token_floor_acc": float(floor.value.iloc[0]) if len(floor) else None,
        "options": asdict(o),
    }
