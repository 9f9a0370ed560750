"""The sweep picture: one line per intervention across layers, chance marked.

Drawn on a ``matplotlib.figure.Figure`` (no pyplot state, no backend switching): a notebook shows
the returned figure inline, a script saves it.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pe_hooks.probes.result import SweepResult
from pe_hooks.viz.figure import InlineFigure, save_png

PANELS = (
    ("acc", "held-out accuracy of position bin", True),
    ("r2", "held-out R² of position (ridge)", False),
    ("anova_r2", "variance explained by position", False),
    ("rel_norm", "relative norm of positional part", False),
)


def plot_sweep(result: SweepResult, path: str | Path | None = None) -> Figure:
    """Four panels (accuracy with chance and the shuffled control, ridge R², ANOVA R², Song &
    Zhong relative norm); saved to ``path`` when given. Returns the matplotlib figure."""
    df = result.df[result.df.layer >= 0]
    floor = result.meta.get("token_floor_acc")
    fig = InlineFigure(figsize=(4.2 * len(PANELS), 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS), squeeze=False)[0]
    names = list(dict.fromkeys(df.intervention))
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, title, with_chance) in zip(axes, PANELS):
        for i, name in enumerate(names):
            sub = df[(df.metric == metric) & (df.intervention == name)].sort_values("layer")
            if sub.empty:
                continue
            ax.plot(sub.layer, sub.value, marker="o", ms=3, color=colors[i % len(colors)], label=name)
            if sub.spread.notna().any():
                ax.fill_between(sub.layer, sub.value - sub.spread, sub.value + sub.spread, color=colors[i % len(colors)], alpha=0.15)
        if with_chance:
            chance = df[df.metric == "chance"].groupby("layer").value.mean()
            ax.plot(chance.index, chance.values, "k--", lw=1, label="chance")
            shuf = df[df.metric == "acc_shuffled"].groupby("layer").value.mean()
            ax.plot(shuf.index, shuf.values, ":", color="grey", lw=1, label="shuffled labels")
            if floor is not None:
                ax.axhline(floor, color="tab:brown", lw=1, ls="-.", label="token floor (text alone)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    m = result.meta
    fig.suptitle(f"{m.get('model')}: position information per layer ({m.get('n_seqs')} held-out-scored sequences x {m.get('seq_len')} tokens)", fontsize=11)
    if path is not None:
        save_png(fig, path, dpi=120)
    return fig
