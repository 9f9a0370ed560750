"""The branches figure: one small panel per view (columns). Top row coloured by branch, each branch
a thin faded trajectory through its tokens in order (▲ = its first generated token); bottom row
the same points coloured by position. Each column's title carries the headline scores: the path
ratio (< 1: the branches follow one positional path; > 1: they separate) and kNN branch purity,
each beside its shuffled-label null."""

from __future__ import annotations

from pathlib import Path
from textwrap import fill
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from pe_hooks.probes.branch_analysis import BranchAnalysis
from pe_hooks.probes.branch_metrics import verdict
from pe_hooks.viz.figure import InlineFigure, save_png


def _branch_colours(n: int) -> list[Any]:
    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["turbo"]
    # spread neighbouring ids apart so adjacent branches do not share a hue
    order = np.argsort((np.arange(n) * 7) % n)
    return [cmap(0.05 + 0.9 * order[i] / max(n - 1, 1)) for i in range(n)]


def panel_title(name: str, scores: dict[str, float]) -> str:
    """``view`` + the headline scores (path ratio and kNN branch purity, each with its null mean)."""
    ratio = scores.get("path_ratio", float("nan"))
    word = verdict(ratio, scores.get("path_ratio_null_lo", float("nan")), scores.get("path_ratio_null_hi", float("nan")))
    return (f"{name}\npath ratio {ratio:.2f} (null {scores.get('path_ratio_null', float('nan')):.2f}): {word}\n"
            f"branch purity {scores.get('knn_branch_purity', float('nan')):.2f} "
            f"(null {scores.get('knn_branch_purity_null', float('nan')):.2f})")


def plot_branches(
    analysis: BranchAnalysis,
    path: str | Path | None = None,
    title: str = "",
    dpi: int = 110,
    *,
    scores_space: str = "original",
    panel_size: float = 2.9,
) -> Figure:
    """Draw every embedded view of ``analysis``; save to ``path`` (PNG) if given. Returns the figure.

    ``scores_space``: the space whose headline scores go in the titles (``"original"``: the
    standardised latents; ``"umap"``: the plane drawn).
    """
    names = list(analysis.embeddings)
    if not names:
        raise ValueError("nothing to draw: run analyze(..., embed=True)")
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    for r in analysis.rows:
        metrics.setdefault((r["view"], r["space"]), {})[r["metric"]] = float(r["value"])
    fig = InlineFigure(figsize=(panel_size * len(names) + 0.8, 2 * panel_size + 1.3), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    all_pos = np.concatenate([analysis.views[n][2] for n in names])
    norm = Normalize(vmin=float(all_pos.min()), vmax=float(all_pos.max()))
    sc = None
    for col, name in enumerate(names):
        e = analysis.embeddings[name]
        _, b, p = analysis.views[name]
        ids = np.unique(b)
        colours = _branch_colours(len(ids))
        ax_b, ax_p = axes[0][col], axes[1][col]
        for i, br in enumerate(ids):
            m = b == br
            order = np.argsort(p[m], kind="stable")
            pts = e[m][order]
            ax_b.plot(pts[:, 0], pts[:, 1], "-", color=colours[i], lw=0.35, alpha=0.3)
            ax_b.scatter(pts[:, 0], pts[:, 1], s=2.5, color=colours[i], alpha=0.55, lw=0)
            ax_b.scatter(pts[:1, 0], pts[:1, 1], s=26, marker="^", color=colours[i], edgecolor="k", lw=0.5, zorder=3)
        order = np.argsort(p, kind="stable")
        sc = ax_p.scatter(e[order, 0], e[order, 1], c=p[order], s=2.5, cmap="viridis", norm=norm, lw=0)
        ax_b.set_title(panel_title(name, metrics.get((name, scores_space), {})), fontsize=7.5)
        for ax in (ax_b, ax_p):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("coloured by branch (▲ = first token)", fontsize=8)
    axes[1][0].set_ylabel("coloured by position", fontsize=8)
    if sc is not None:
        fig.colorbar(sc, ax=axes[1].tolist(), label="position", shrink=0.85, pad=0.01)
    where = "the latents" if scores_space == "original" else "the UMAP plane"
    key = (f"path ratio = distance between branches at the same position / distance along a branch, in {where}: "
           "< 1 the branches follow the same path, > 1 they separate. Nulls: shuffled labels.")
    width = max(60, int(fig.get_figwidth() * 15))
    fig.suptitle((title or f"UMAP of generation branches, layer {analysis.layer}") + "\n" + fill(key, width), fontsize=9)
    if path is not None:
        save_png(fig, path, dpi=dpi)
    return fig
