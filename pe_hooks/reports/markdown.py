"""Markdown report of the sweep (``sweep.md``; the branches' reports: ``branches_md``). Pure
functions of the data; nothing here runs a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pe_hooks.probes.result import SweepResult

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
        *([f"Model dtype: {m['dtype']}.", ""] if m.get("dtype") else []),
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
