"""Learned removal: fitted residual-stream position erasers (LEACE, per-position means, PCA)."""

from pe_hooks.erasers.eraser import EraserInfo, PositionEraser
from pe_hooks.erasers.features import fourier_features, onehot_bins, position_features
from pe_hooks.erasers.fit import fit_eraser, fit_on_arrays
from pe_hooks.erasers.methods import METHODS, SiteMap

__all__ = [
    "METHODS",
    "EraserInfo",
    "PositionEraser",
    "SiteMap",
    "fit_eraser",
    "fit_on_arrays",
    "fourier_features",
    "onehot_bins",
    "position_features",
]
