"""Measurement: held-out position probes, per-layer geometry, the layer sweep, and the latents of
generation branches (sampling, erased views, UMAP and separation metrics)."""

from pe_hooks.probes.branch_analysis import BranchAnalysis, analyze, umap_embed
from pe_hooks.probes.branch_metrics import headline_scores, path_ratio
from pe_hooks.probes.branch_views import erase_crossfit, make_views
from pe_hooks.probes.branches import DEFAULT_PROMPTS, BranchLatents, branches
from pe_hooks.probes.estimators import StreamingLDA, StreamingRidge
from pe_hooks.probes.geometry import geometry
from pe_hooks.probes.layer_choice import choice_reason, choose_layers, layer_scores
from pe_hooks.probes.planted import planted_branches
from pe_hooks.probes.stats import LayerStats
from pe_hooks.probes.sweep import SweepResult, sweep

__all__ = [
    "DEFAULT_PROMPTS",
    "BranchAnalysis",
    "BranchLatents",
    "LayerStats",
    "StreamingLDA",
    "StreamingRidge",
    "SweepResult",
    "analyze",
    "branches",
    "choice_reason",
    "choose_layers",
    "erase_crossfit",
    "geometry",
    "headline_scores",
    "layer_scores",
    "make_views",
    "path_ratio",
    "planted_branches",
    "sweep",
    "umap_embed",
]
