"""Print the README's summary tables from the sweep and branches outputs (no hand transcription).

    python docs/readme_tables.py            # after `pe-hooks sweep --model smollm2-135m --out docs/results`,
                                            # `pe-hooks sweep --model minilm-l6 --out docs/results` and the
                                            # README's `pe-hooks branches --model minilm-l6 --texts ...`
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"

SMOLLM2 = ("sweep-smollm2-135m", [0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 30], [
    ("acc", "baseline", "acc baseline"), ("acc", "zero", "acc zero"), ("acc", "remove", "acc remove"),
    ("acc", "erase", "acc erase (LEACE)"), ("r2", "baseline", "R² baseline"), ("r2", "zero", "R² zero"),
    ("r2", "erase", "R² erase"), ("rel_norm", "baseline", "rel. norm baseline"),
])
SMOLLM2_PROBES = ("sweep-smollm2-135m", [-1, 0, 4, 8, 12, 16, 20, 24, 28, 30], ("baseline", "zero", "remove", "erase"))
PROBES = (("acc", "linear"), ("acc_knn_cosine", "kNN cos"), ("acc_knn_euclidean", "kNN euc"), ("acc_mlp", "MLP"))
MINILM = ("sweep-minilm-l6", [0, 1, 2, 3, 4, 5, 6], [
    ("acc", "baseline", "acc baseline"), ("acc", "zero", "acc zero"), ("acc", "remove", "acc remove"),
    ("acc", "erase", "acc erase"), ("r2", "baseline", "R² baseline"), ("r2", "zero", "R² zero"),
    ("rel_norm", "baseline", "rel. norm baseline"),
])


def table(folder: str, layers: list[int], columns: list[tuple[str, str, str]]) -> str:
    df = pd.read_csv(RESULTS / folder / "sweep.csv")
    final = int(df.layer.max())
    value = {(r.layer, r.intervention, r.metric): r.value for r in df.itertuples()}
    lines = ["| layer | " + " | ".join(c[2] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for layer in layers:
        cells = []
        for metric, cond, _ in columns:
            v = value.get((layer, cond, metric), float("nan"))
            cells.append(f"{v:.3f}" if metric.startswith("acc") else f"{v:.2f}")
        label = f"{layer} (final)" if layer == final else "tokens (floor)" if layer == -1 else str(layer)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    acc = df[(df.metric == "acc") & (df.layer >= 0)]
    shuf = df[(df.metric == "acc_shuffled") & (df.layer >= 0)]
    chance = df[df.metric == "chance"].value.mean()
    floor = df[(df.layer == -1) & (df.metric == "acc") & (df.intervention == "baseline")].value
    lines.append("")
    lines.append(f"Chance (majority bin) {chance:.3f}; shuffled-label control {shuf.value.min():.3f}–"
                 f"{shuf.value.max():.3f}; token floor {float(floor.iloc[0]):.3f}; accuracy range "
                 f"{acc.value.min():.3f}–{acc.value.max():.3f}.")
    return "\n".join(lines)


def probes_table(folder: str, layers: list[int], conditions: tuple[str, ...]) -> str:
    """One cell per condition: linear / kNN cos / kNN euc / MLP held-out accuracy."""
    df = pd.read_csv(RESULTS / folder / "sweep.csv")
    final = int(df.layer.max())
    value = {(r.layer, r.intervention, r.metric): r.value for r in df.itertuples()}
    head = " / ".join(name for _, name in PROBES)
    lines = ["| layer | " + " | ".join(f"{c}: {head}" for c in conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    for layer in layers:
        cells = [" / ".join(f"{value.get((layer, c, m), float('nan')):.3f}" for m, _ in PROBES) for c in conditions]
        label = f"{layer} (final)" if layer == final else "tokens (floor)" if layer == -1 else str(layer)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    shuf = df[df.metric.isin([f"{m}_shuffled" for m, _ in PROBES[1:]])]
    lines.append("")
    lines.append(f"Shuffled-label controls of the non-linear probes: {shuf.value.min():.3f}–{shuf.value.max():.3f}.")
    return "\n".join(lines)


BRANCH_METRICS = (("path_ratio", "path ratio (pooled)"), ("path_ratio_by_group", "path ratio by prompt"),
                  ("knn_branch_purity", "kNN branch purity"))


def branches_layers_table(folder: str, metric: str, space: str = "original") -> str:
    """One row per view, one column per layer: ``metric``; a last row gives its shuffled-label null
    (2.5-97.5%) over all views (the widest interval of any view)."""
    df = pd.read_csv(RESULTS / folder / "metrics.csv")
    df = df[df.space == space]
    value = {(r.layer, r.view, r.metric): r.value for r in df.itertuples()}
    layers = sorted(df.layer.unique())
    views = [v for v in dict.fromkeys(df.view) if v not in ("shuffled", "chance")]
    lines = ["| view | " + " | ".join(f"layer {layer}" for layer in layers) + " |", "|---" * (len(layers) + 1) + "|"]
    for view in views:
        lines.append(f"| {view} | " + " | ".join(f"**{value[(layer, view, metric)]:.3f}**" for layer in layers) + " |")
    nulls = [(min(value[(layer, v, metric + "_null_lo")] for v in views),
              max(value[(layer, v, metric + "_null_hi")] for v in views)) for layer in layers]
    lines.append("| its null (any view) | " + " | ".join(f"[{lo:.3f}, {hi:.3f}]" for lo, hi in nulls) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for spec in (SMOLLM2, MINILM):
        print(f"## {spec[0]}\n\n{table(*spec)}\n")
    print(f"## {SMOLLM2_PROBES[0]}: probes side by side\n\n{probes_table(*SMOLLM2_PROBES)}\n")
    if (RESULTS / "branches-minilm-l6" / "metrics.csv").exists():
        for metric, label in BRANCH_METRICS:
            print(f"## branches-minilm-l6: {label}\n\n"
                  f"{branches_layers_table('branches-minilm-l6', metric)}\n")
