"""Pictures of result objects, drawn on ``matplotlib.figure.Figure`` (no pyplot state, no backend
switching) and returned, so a notebook shows them inline and a script saves them."""

from pe_hooks.viz.branches_plot import plot_branches, plot_branches_run
from pe_hooks.viz.sweep_plot import plot_sweep

__all__ = ["plot_branches", "plot_branches_run", "plot_sweep"]
