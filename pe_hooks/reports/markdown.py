"""Markdown report of the sweep (``sweep.md``; the branches' reports: ``branches_md``). Pure
functions of the data; nothing here runs a model."""

from __future__ import annotations

from pathlib import Path

from pe_hooks.probes.sweep import SweepResult

SWEEP_SECTIONS = (
    ("acc", None),
    ("acc_shuffled", "Shuffled-label control (must be at chance)"),
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


def sweep_markdown(result: SweepResult) -> str:
    """The whole sweep report: the setting, then one table per metric."""
    m = result.meta
    parts = [
        f"# Position probes per layer: {m.get('model')}",
        "",
        f"Data: {m.get('n_seqs')} probe sequences x {m.get('seq_len')} tokens ({m.get('data')}), "
        f"{m.get('n_fit')} other sequences to fit erasers; site `{m.get('site')}`; positions "
        f"{m.get('t_min')}..{m.get('t_max')} in {m.get('n_bins')} bins; {m.get('folds')}-fold splits grouped "
        "by sequence; linear discriminant (accuracy) and ridge (R^2) probes; shuffled-label control.",
        "",
    ]
    have = set(result.df.metric)
    for metric, title in SWEEP_SECTIONS:
        if title is None:
            title = (f"Held-out accuracy of binned position (chance ~{m.get('chance', float('nan')):.3f}; "
                     f"token floor {m.get('token_floor_acc') or float('nan'):.3f})")
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
