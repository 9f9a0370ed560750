"""Learned removal: fitted residual-stream position erasers (LEACE, per-position means, PCA,
quadratic), each method's options one object (``Leace``, ``Mean``, ``Pca``, ``Quadratic``)."""

from pe_hooks.erasers.eraser import EraserInfo, PositionEraser
from pe_hooks.erasers.features import position_features
from pe_hooks.erasers.fit import fit_eraser, fit_on_arrays
from pe_hooks.erasers.options import EraserMethod, Leace, Mean, Pca, Quadratic

__all__ = [
    "EraserInfo",
    "EraserMethod",
    "Leace",
    "Mean",
    "Pca",
    "PositionEraser",
    "Quadratic",
    "fit_eraser",
    "fit_on_arrays",
    "position_features",
]
