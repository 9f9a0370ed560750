"""The branches figure: one row per view, coloured by branch (trajectories) and by position."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from pe_hooks.viz.branches import BranchAnalysis


def plot_branches(analysis: BranchAnalysis, path: str | Path | None = None, title: str = "") -> Any:
    """Rows = views (raw, erased, intervened...), columns = coloured by branch (each branch a
    trajectory through its tokens in order) and by position. Returns the figure."""
    names = list(analysis.embeddings)
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 4.2 * len(names)), squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    metrics = {(r["view"], r["space"], r["metric"]): r["value"] for r in analysis.rows}
    for row, name in enumerate(names):
        e = analysis.embeddings[name]
        _, b, p = analysis.views[name]
        ax_b, ax_p = axes[row]
        for i, br in enumerate(np.unique(b)):
            m = b == br
            order = np.argsort(p[m])
            pts = e[m][order]
            ax_b.plot(pts[:, 0], pts[:, 1], "-", color=cmap(i % 10), lw=0.8, alpha=0.6)
            ax_b.scatter(pts[:, 0], pts[:, 1], s=8, color=cmap(i % 10), label=f"branch {br}")
            ax_b.scatter(pts[:1, 0], pts[:1, 1], s=40, marker="^", color=cmap(i % 10), edgecolor="k", lw=0.5)
        sc = ax_p.scatter(e[:, 0], e[:, 1], c=p, s=8, cmap="viridis")
        fig.colorbar(sc, ax=ax_p, label="position")
        purity = metrics.get((name, "umap", "knn_branch_purity"), float("nan"))
        rho = metrics.get((name, "umap", "position_spearman"), float("nan"))
        ax_b.set_title(f"{name}: by branch (kNN purity {purity:.2f}; ▲ = first token)", fontsize=10)
        ax_p.set_title(f"{name}: by position (|Spearman| {rho:.2f})", fontsize=10)
        for ax in (ax_b, ax_p):
            ax.set_xticks([])
            ax.set_yticks([])
    if len(np.unique(analysis.views[names[0]][1])) <= 10:
        axes[0][0].legend(fontsize=7, loc="best", ncol=2)
    fig.suptitle(title or f"UMAP of generation branches, layer {analysis.layer}", fontsize=12)
    if path is not None:
        fig.savefig(str(path), dpi=110)
        plt.close(fig)
    return fig
