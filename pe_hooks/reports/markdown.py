"""Markdown reports of the result objects: the sweep (``sweep.md``) and the branches
(``metrics.md``, ``branches.md``). Pure functions of the data; nothing here runs a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pe_hooks.core.errors import DataError
from pe_hooks.probes.branches import BranchLatents
from pe_hooks.probes.separation import METRICS
from pe_hooks.probes.sweep import SweepResult

SWEEP_SECTIONS = (
    ("acc", None),
    ("acc_shuffled", "Shuffled-label control (must be at chance)"),
    ("acc_knn_cosine", "kNN (cosine, 15 neighbours) held-out accuracy"),
    ("acc_knn_cosine_shuffled", "kNN (cosine): shuffled-label control"),
    ("acc_knn_euclidean", "kNN (Euclidean, 15 neighbours) held-out accuracy"),
    ("acc_knn_euclidean_shuffled", "kNN (Euclidean): shuffled-label control"),
    ("acc_mlp", "MLP (64 hidden units) held-out accuracy"),
    ("acc_mlp_shuffled", "MLP: shuffled-label control"),
    ("r2", "Held-out R^2 of the position index (ridge)"),
    ("mae", "Mean absolute error of the predicted position, in tokens"),
    ("anova_r2", "Fraction of residual variance explained by position"),
    ("rel_norm", "Relative norm of the positional part (Song & Zhong)"),
    ("pos_ctx_cos", "Mean cosine of the principal angles between the positional (bin means) and content subspaces"),
    ("pos_ctx_cos_null", "... the same for shuffled position labels (the noise level to compare with)"),
)

BRANCH_METRIC_NAMES = {
    "knn_branch_purity": "kNN branch purity",
    "knn_position_agreement": "kNN pos. agreement",
    "knn_cross_position_agreement": "kNN cross-branch pos. agreement",
    "position_spearman": "max abs Spearman(pos, lead axis)",
    "silhouette_branch": "silhouette (branch)",
    "nmi_kmeans_branch": "NMI k-means/branch",
    "nmi_kmeans_position": "NMI k-means/position",
}


# ------------------------------------------------------------------------------------ sweep


def sweep_table(result: SweepResult, metric: str = "acc", digits: int = 3) -> str:
    """Markdown table of one metric (layers as rows, interventions as columns)."""
    piv = result.pivot(metric)
    cols = list(piv.columns)
    lines = ["| layer | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for layer, row in piv.iterrows():
        lines.append(f"| {layer} | " + " | ".join(f"{row[c]:.{digits}f}" for c in cols) + " |")
    return "\n".join(lines)


PROBE_COLUMNS = (("acc", "linear"), ("acc_knn_cosine", "kNN cos"), ("acc_knn_euclidean", "kNN euc"), ("acc_mlp", "MLP"))


def probes_side_by_side(result: SweepResult, digits: int = 3) -> str:
    """Markdown table: one row per layer, for each condition the linear and non-linear probes'
    held-out accuracy side by side ("" when the sweep ran no non-linear probe)."""
    have = [(m, name) for m, name in PROBE_COLUMNS if m in set(result.df.metric)]
    if len(have) < 2:
        return ""
    conds = list(dict.fromkeys(result.df.intervention))
    tables = {m: result.df[result.df.metric == m].pivot_table(index="layer", columns="intervention", values="value")
              for m, _ in have}
    header = "| layer | " + " | ".join(f"{c}: {name}" for c in conds for _, name in have) + " |"
    lines = [header, "|---" * (1 + len(conds) * len(have)) + "|"]
    for layer in tables[have[0][0]].index:
        cells = []
        for c in conds:
            for m, _ in have:
                v = tables[m].get(c, pd.Series(dtype=float)).get(layer, float("nan"))
                cells.append("–" if not np.isfinite(v) else f"{v:.{digits}f}")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_markdown(result: SweepResult) -> str:
    """The whole sweep report: the setting, then one table per metric."""
    m = result.meta
    parts = [
        f"# Position probes per layer: {m.get('model')}",
        "",
        f"Data: {m.get('n_seqs')} probe sequences x {m.get('seq_len')} tokens ({m.get('data')}), "
        f"{m.get('n_fit')} other sequences to fit erasers; site `{m.get('site')}`; positions "
        f"{m.get('t_min')}..{m.get('t_max')} in {m.get('n_bins')} bins; {m.get('folds')}-fold splits grouped "
        + ("by sequence; shuffled-label control for every probe. Linear probe: "
           f"{m.get('probe', 'LDA')}; its directions and the ridge R^2 use all {m.get('n_tokens_moments', '?')} probe tokens, "
           f"its accuracy is scored on {m.get('n_tokens_sample', '?')} sampled tokens ({m.get('sample_seqs', '?')}-sequence "
           f"sample); non-linear probes ({', '.join(m.get('nonlinear') or []) or 'none'}) on the first "
           f"{m.get('nonlinear_seqs', '?')} sampled sequences."
           if "acc" in set(result.df.metric) else
           "by sequence; ridge (R^2) probes and geometry only (accuracy not evaluated: sweep(..., evaluate=False))."),
        "",
    ]
    side = probes_side_by_side(result)
    if side:
        parts += ["## Which probes still find position (held-out accuracy; layer -1 = token floor)", "", side, ""]
    have = set(result.df.metric)
    for metric, title in SWEEP_SECTIONS:
        if title is None:
            floor = m.get("token_floor_acc")
            chance = m.get("chance")
            title = "Held-out accuracy of binned position (" + "; ".join(
                ([f"chance ~{chance:.3f}"] if isinstance(chance, (int, float)) and chance == chance else [])
                + ([f"token floor {floor:.3f}"] if isinstance(floor, (int, float)) and floor == floor else [])
            ) + ")"
        if metric in have:
            parts += [f"## {title}", "", sweep_table(result, metric), ""]
    skipped = m.get("skipped") or {}
    for name, why in skipped.items():
        parts.append(f"- `{name}` skipped: {why}")
    return "\n".join(parts) + "\n"


def write_sweep_markdown(result: SweepResult, folder: str | Path) -> Path:
    """Write ``sweep.md`` into ``folder``; returns its path."""
    path = Path(folder) / "sweep.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sweep_markdown(result))
    return path


# --------------------------------------------------------------------------------- branches


def branch_metrics_table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> str:
    """Markdown table of separation metrics (views x metrics) from tidy rows
    (layer, view, space, metric, value), e.g. ``BranchAnalysis.rows``."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise DataError("no metric rows to tabulate")
    values = {(r.view, r.space, r.metric): float(r.value) for r in df.itertuples()}
    pairs = list(dict.fromkeys((r.view, r.space) for r in df.itertuples()))
    cols = [m for m in METRICS if m in set(df["metric"])]
    lines = ["| view | space | " + " | ".join(BRANCH_METRIC_NAMES[c] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for view, space in pairs:
        got = [values.get((view, space, c), float("nan")) for c in cols]
        cells = ["–" if not np.isfinite(v) else f"{v:.3f}" for v in got]
        lines.append(f"| {view} | {space} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def branches_header(
    settings: Mapping[str, Any], prompts: Sequence[str], n_excluded: Mapping[int, int], timings: Mapping[str, float]
) -> list[str]:
    """The opening lines of ``metrics.md`` / ``branches.md``: the setting and what each view is.

    ``settings`` holds model, branches, tokens, temperature, top_p, seed, site, eraser, fit_seqs,
    intervention and massive (the ``pe-hooks branches`` options).
    """
    s = settings
    return [
        f"# Branches: {s['model']}",
        "",
        f"Prompts: {', '.join(repr(p) for p in prompts)}; {s['branches']} branches each x {s['tokens']} new tokens; "
        f"temperature {s['temperature']}, top-p {s['top_p']}, seed {s['seed']}; site {s['site']}.",
        "",
        "Views: *raw* = latents of the generated tokens; *erased (…, reference)* = the same latents through a "
        f"{s['eraser']} eraser fitted on {s['fit_seqs']} sequences of the reference corpus (not the branches); "
        "*erased (branches, out-of-sample)* = LEACE (4 Fourier features) fitted on the branches, cross-fitted by "
        "branch (4 folds: no token is erased by an eraser that saw it); "
        f"*intervened ({s['intervention']})* = new branches generated and read under that intervention; "
        "*shuffled* = raw latents with (branch, position) labels permuted jointly (empirical floor); *chance* = "
        "analytic kNN chance. Prompt tokens and BOS are excluded; massive-activation tokens "
        f"(norm > {s['massive']} x median) excluded per layer: {dict(n_excluded)}.",
        "",
        f"Time on this machine: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}.",
        "",
    ]


def branches_tables(rows: Sequence[Mapping[str, Any]], layers: Sequence[int]) -> list[str]:
    """One section per layer: the figure and its metrics table."""
    out: list[str] = []
    for layer in layers:
        table = branch_metrics_table([r for r in rows if r["layer"] == layer])
        out += [f"## Layer {layer}", "", f"![layer {layer}](branches-layer{layer}.png)", "", table, ""]
    return out


def branches_texts(raw: BranchLatents, n_branches: int, intervened: BranchLatents | None, intervention: str) -> list[str]:
    """The generated continuations (and the intervened ones)."""
    texts = ["## Generated continuations", ""]
    for i, txt in enumerate(raw.texts):
        texts.append(f"{i}. (prompt {i // n_branches}) {txt!r}")
    if intervened is not None:
        texts += ["", f"## Intervened continuations ({intervention})", ""]
        texts += [f"{i}. {txt!r}" for i, txt in enumerate(intervened.texts)]
    return texts


def write_branches_markdown(
    folder: str | Path,
    *,
    settings: Mapping[str, Any],
    raw: BranchLatents,
    intervened: BranchLatents | None,
    rows: Sequence[Mapping[str, Any]],
    layers: Sequence[int],
    timings: Mapping[str, float],
) -> str:
    """Write ``metrics.md`` (setting + tables) and ``branches.md`` (+ the texts) into ``folder``;
    returns the ``metrics.md`` text."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    n_excluded = {layer: int((~raw.keep(layer)).sum()) for layer in layers}
    head = branches_header(settings, raw.prompts, n_excluded, timings)
    tables = branches_tables(rows, layers)
    texts = branches_texts(raw, int(settings["branches"]), intervened, str(settings["intervention"]))
    (out / "metrics.md").write_text("\n".join(head + tables) + "\n")
    (out / "branches.md").write_text("\n".join(head + tables + texts) + "\n")
    return "\n".join(head + tables)
