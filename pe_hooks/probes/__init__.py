"""Measurement of position: held-out position probes, per-layer geometry and the layer sweep
(``sweep`` -> ``SweepResult``). The branches analysis is its own package, ``pe_hooks.branching``."""

from pe_hooks.probes.estimators import StreamingLDA, StreamingRidge
from pe_hooks.probes.geometry import geometry
from pe_hooks.probes.options import SweepOptions
from pe_hooks.probes.result import SweepResult
from pe_hooks.probes.stats import LayerStats
from pe_hooks.probes.sweep import sweep

__all__ = [
    "LayerStats",
    "StreamingLDA",
    "StreamingRidge",
    "SweepOptions",
    "SweepResult",
    "geometry",
    "sweep",
]
