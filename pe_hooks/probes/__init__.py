"""Measurement: held-out position probes, per-layer geometry, the layer sweep, and the latents of
generation branches (sampling, erased views, UMAP and separation metrics)."""

from pe_hooks.probes.branches import (
    DEFAULT_PROMPTS,
    BranchAnalysis,
    BranchLatents,
    analyze,
    branches,
    erase_crossfit,
    make_views,
    umap_embed,
)
from pe_hooks.probes.estimators import StreamingLDA, StreamingRidge
from pe_hooks.probes.geometry import geometry
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
    "erase_crossfit",
    "geometry",
    "make_views",
    "sweep",
    "umap_embed",
]
