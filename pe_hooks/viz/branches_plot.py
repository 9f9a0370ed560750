"""The branches figure: one row per view; left coloured by branch (each branch a trajectory
through its tokens in order, ▲ = first generated token), right coloured by position."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from pe_hooks.probes.branches import BranchAnalysis
from pe_hooks.viz.figure import InlineFigure, save_png


def _branch_colours(n: int) -> list[Any]:
    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]


def plot_branches(analysis: BranchAnalysis, path: str | Path | None = None, title: str = "", dpi: int = 110) -> Figure:
    """Draw every embedded view of ``analysis``; save to ``path`` (PNG) if given. Returns the figure."""
    names = list(analysis.embeddings)
    if not names:
        raise ValueError("nothing to draw: run analyze(..., embed=True)")
    fig = InlineFigure(figsize=(10, 4.2 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 2, squeeze=False)
    metrics = {(r["view"], r["space"], r["metric"]): r["value"] for r in analysis.rows}
    for row, name in enumerate(names):
        e = analysis.embeddings[name]
        _, b, p = analysis.views[name]
        ids = np.unique(b)
        colours = _branch_colours(len(ids))
        ax_b, ax_p = axes[row]
        for i, br in enumerate(ids):
            m = b == br
            order = np.argsort(p[m], kind="stable")
            pts = e[m][order]
            ax_b.plot(pts[:, 0], pts[:, 1], "-", color=colours[i], lw=0.7, alpha=0.45)
            ax_b.scatter(pts[:, 0], pts[:, 1], s=7, color=colours[i], label=f"branch {br}")
            ax_b.scatter(pts[:1, 0], pts[:1, 1], s=45, marker="^", color=colours[i], edgecolor="k", lw=0.6, zorder=3)
        sc = ax_p.scatter(e[:, 0], e[:, 1], c=p, s=7, cmap="viridis")
        fig.colorbar(sc, ax=ax_p, label="position")
        purity = metrics.get((name, "umap", "knn_branch_purity"), float("nan"))
        cross = metrics.get((name, "umap", "knn_cross_position_agreement"), float("nan"))
        rho = metrics.get((name, "umap", "position_spearman"), float("nan"))
        ax_b.set_title(f"{name}\nby branch: kNN branch purity {purity:.2f}", fontsize=9)
        ax_p.set_title(f"{name}\nby position: cross-branch agreement {cross:.2f}, |ρ| {rho:.2f}", fontsize=9)
        for ax in (ax_b, ax_p):
            ax.set_xticks([])
            ax.set_yticks([])
    if len(np.unique(analysis.views[names[0]][1])) <= 20:
        axes[0][0].legend(fontsize=6, loc="best", ncol=2, markerscale=1.5)
    fig.suptitle(title or f"UMAP of generation branches, layer {analysis.layer} (▲ = first generated token)", fontsize=12)
    if path is not None:
        save_png(fig, path, dpi=dpi)
    return fig
