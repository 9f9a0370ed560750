"""Learned removal: fitted residual-stream position erasers (LEACE, per-position means, PCA)."""

from pe_hooks.erasers.eraser import EraserInfo, PositionEraser
from pe_hooks.erasers.features import position_features
from pe_hooks.erasers.fit import fit_eraser, fit_on_arrays

__all__ = [
    "EraserInfo",
    "PositionEraser",
    "fit_eraser",
    "fit_on_arrays",
    "position_features",
]
