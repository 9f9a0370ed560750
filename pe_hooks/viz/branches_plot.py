"""The branches figure: one small panel per view (columns). Top row coloured by branch (by prompt
families of hues when ``branch_group`` is given): faint token points, and each branch's path as a
thin line through the running mean of ``smooth`` consecutive tokens (token-to-token jumps would
draw a hairball), ▲ = its first generated token. Bottom row: the same points coloured by position.
Each column's title carries the headline scores: the path ratio (< 1: the branches follow one
positional path; > 1: they separate) and kNN branch purity, each beside its shuffled-label null."""

from __future__ import annotations

from pathlib import Path
from textwrap import fill
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from pe_hooks.branching.analysis import BranchAnalysis
from pe_hooks.branching.run import BranchesRun
from pe_hooks.branching.scores import verdict
from pe_hooks.viz.figure import InlineFigure, save_png

GROUP_MAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys", "YlOrBr", "PuRd")


def _grouped_colours(ids: np.ndarray, group: dict[int, int]) -> list[Any]:
    """One hue family per group (e.g. prompt), one shade per branch inside it."""
    groups = sorted({group.get(int(i), 0) for i in ids})
    out = []
    for i in ids:
        g = group.get(int(i), 0)
        members = [j for j in ids if group.get(int(j), 0) == g]
        k = members.index(i)
        cmap = colormaps[GROUP_MAPS[groups.index(g) % len(GROUP_MAPS)]]
        out.append(cmap(0.45 + 0.5 * k / max(len(members) - 1, 1)))
    return out


def _running_mean(pts: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or len(pts) < w:
        return pts
    c = np.cumsum(np.vstack([np.zeros((1, pts.shape[1])), pts]), 0)
    return np.asarray((c[w:] - c[:-w]) / w)


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
    smooth: int = 9,
    branch_group: dict[int, int] | None = None,
    clip: float = 0.98,
) -> Figure:
    """Draw every embedded view of ``analysis``; save to ``path`` (PNG) if given. Returns the figure.

    ``scores_space``: the space whose headline scores go in the titles (``"original"``: the
    standardised latents; ``"umap"``: the plane drawn). ``smooth``: tokens per running mean of a
    branch's path (1: through every token). ``branch_group``: branch id -> group (e.g. prompt)
    for hue families. ``clip``: the axes span this quantile range of the points (padded), so a
    few far-off tokens (e.g. chat-template tokens) do not squeeze the picture; 1 shows every point.
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
        colours = _grouped_colours(ids, branch_group) if branch_group else _branch_colours(len(ids))
        ax_b, ax_p = axes[0][col], axes[1][col]
        for i, br in enumerate(ids):
            m = b == br
            order = np.argsort(p[m], kind="stable")
            pts = e[m][order]
            ax_b.scatter(pts[:, 0], pts[:, 1], s=2, color=colours[i], alpha=0.3, lw=0)
            line = _running_mean(pts, smooth)
            ax_b.plot(line[:, 0], line[:, 1], "-", color=colours[i], lw=0.6, alpha=0.6)
            ax_b.scatter(pts[:1, 0], pts[:1, 1], s=26, marker="^", color=colours[i], edgecolor="k", lw=0.5, zorder=3)
        order = np.argsort(p, kind="stable")
        sc = ax_p.scatter(e[order, 0], e[order, 1], c=p[order], s=2.5, cmap="viridis", norm=norm, lw=0)
        ax_b.set_title(panel_title(name, metrics.get((name, scores_space), {})), fontsize=7.5)
        lo, hi = np.quantile(e, 1 - clip, axis=0), np.quantile(e, clip, axis=0)
        pad = 0.2 * (hi - lo) + 1e-9
        for ax in (ax_b, ax_p):
            ax.set_xticks([])
            ax.set_yticks([])
            if clip < 1:
                ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
                ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    path_word = f"running mean of {smooth} tokens" if smooth > 1 else "token by token"
    axes[0][0].set_ylabel(f"by branch: path = {path_word}, ▲ = first token", fontsize=7.5)
    axes[1][0].set_ylabel("coloured by position", fontsize=8)
    if sc is not None:
        fig.colorbar(sc, ax=axes[1].tolist(), label="position", shrink=0.85, pad=0.01)
    where = "the latents" if scores_space == "original" else "the UMAP plane"
    key = (f"path ratio = distance between branches at the same position / distance along a branch, in {where}: "
           "< 1 the branches follow the same path, > 1 they separate. Nulls: shuffled labels."
           + (f" Axes span {100 * (2 * clip - 1):.0f}% of the points." if clip < 1 else ""))
    width = max(60, int(fig.get_figwidth() * 15))
    fig.suptitle((title or f"UMAP of generation branches, layer {analysis.layer}") + "\n" + fill(key, width), fontsize=9)
    if path is not None:
        save_png(fig, path, dpi=dpi)
    return fig


def plot_branches_run(run: BranchesRun, folder: str | Path | None = None, **kwargs: Any) -> dict[int, Figure]:
    """The figure of every layer of ``run`` (``pe_hooks.run_branches``), titled as ``pe-hooks branches``
    titles them; saved as ``folder/branches-layer{L}.png`` if ``folder`` is given. ``kwargs`` go to
    ``plot_branches``."""
    return {
        layer: plot_branches(
            analysis, None if folder is None else Path(folder) / f"branches-layer{layer}.png", title=run.title(layer),
            branch_group=run.branch_group(), **kwargs,
        )
        for layer, analysis in run.analyses.items()
    }
