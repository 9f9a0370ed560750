"""Markdown reports of sweep and branches results (the one place Markdown is written)."""

from pe_hooks.reports.branches_md import (
    branch_metrics_table,
    headline_table,
    layer_scores_table,
    write_branches_markdown,
    write_branches_report,
)
from pe_hooks.reports.markdown import sweep_markdown, sweep_table, write_sweep_markdown

__all__ = [
    "branch_metrics_table",
    "headline_table",
    "layer_scores_table",
    "sweep_markdown",
    "sweep_table",
    "write_branches_markdown",
    "write_branches_report",
    "write_sweep_markdown",
]
