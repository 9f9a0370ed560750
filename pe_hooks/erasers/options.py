"""One options object per erasure method: what each method can be told, checked when it is made.

``fit_eraser(model, data, method=Quadratic(n_bins=8, pool=0.1))``; a method's name alone
(``method="quadratic"``) is the same with its defaults. ``n_bins`` is the number of equal-width
position bins of the method that has them: LEACE's one-hot code (``Leace(features="onehot")``) or
the quadratic eraser's classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pe_hooks.core.errors import ArgumentError, DataError
from pe_hooks.core.validate import check_bool, check_int, check_number
from pe_hooks.erasers.features import FEATURES, feature_dim
from pe_hooks.erasers.methods import SiteFitter
from pe_hooks.erasers.quadratic import QuadraticSiteFitter


@dataclass(frozen=True)
class Leace:
    """LEACE (concept-erasure's ``LeaceFitter``) on a code of position: ``features="fourier"``
    (``2 * n_freqs + 1`` dims) or ``"onehot"`` (``n_bins`` equal-width bins)."""

    features: str = "fourier"
    n_freqs: int = 8
    n_bins: int = 16
    name: ClassVar[str] = "leace"

    def __post_init__(self) -> None:
        if self.features in ("int", "integer", "index", "raw"):
            raise DataError(
                "integer position labels make LEACE erase a single direction (position stays decodable): "
                "use features='fourier' (default) or 'onehot'"
            )
        if self.features not in FEATURES:
            raise DataError(f"unknown features '{self.features}'; use one of {', '.join(FEATURES)}")
        check_int(self.n_freqs, "n_freqs", minimum=1, fix="the Fourier position code has 2 * n_freqs + 1 dims (8 by default)")
        check_int(self.n_bins, "n_bins", minimum=2, fix="position bins are classes: at least 2 (16 one-hot bins, 8 quadratic)")

    @property
    def z_dim(self) -> int:
        """Dimensions of the position code."""
        return feature_dim(self.features, self.n_freqs, self.n_bins)

    def fitter(self, d: int, max_position: int) -> SiteFitter:
        return SiteFitter("leace", d, max_position=max_position, features=self.features, n_freqs=self.n_freqs,
                          n_bins=self.n_bins)


@dataclass(frozen=True)
class Mean:
    """Per-position mean subtraction; ``denoise``: keep only the part of the means above their
    estimation noise (``False``: raw means, which inject position out of sample)."""

    denoise: bool = True
    name: ClassVar[str] = "mean"

    def __post_init__(self) -> None:
        check_bool(self.denoise, "denoise")

    def fitter(self, d: int, max_position: int) -> SiteFitter:
        return SiteFitter("mean", d, max_position=max_position, denoise=self.denoise)


@dataclass(frozen=True)
class Pca:
    """Project out the top-``k`` principal directions of the per-position means (``k=None``: the
    fewest explaining ``var`` of their variance)."""

    k: int | None = None
    var: float = 0.9
    name: ClassVar[str] = "pca"

    def __post_init__(self) -> None:
        if self.k is not None:
            check_int(self.k, "k", minimum=1, fix="k is the number of principal directions 'pca' removes (None: chosen by var)")
        fix = "var is the fraction of the positional variance 'pca' removes: pass a number in (0, 1] (0.9 by default)"
        if not 0 < check_number(self.var, "var", fix=fix) <= 1:
            raise ArgumentError(f"var must be in (0, 1], got {self.var!r}; {fix}")

    def fitter(self, d: int, max_position: int) -> SiteFitter:
        return SiteFitter("pca", d, max_position=max_position, k=self.k, var=self.var)


@dataclass(frozen=True)
class Quadratic:
    """concept-erasure's ``QuadraticFitter`` with ``n_bins`` equal-width position bins as classes
    (``pe_hooks.erasers.quadratic``): ``shrinkage`` of each bin covariance, ``pool`` (shrink them
    towards the pooled one), ``min_per_bin`` (fewest tokens a bin needs; default ``max(2, d // 4)``)."""

    n_bins: int = 8
    shrinkage: bool = True
    pool: float = 0.0
    min_per_bin: int | None = None
    name: ClassVar[str] = "quadratic"

    def __post_init__(self) -> None:
        check_int(self.n_bins, "n_bins", minimum=2, fix="position bins are classes: at least 2 (16 one-hot bins, 8 quadratic)")
        check_bool(self.shrinkage, "shrinkage")
        if not 0.0 <= check_number(self.pool, "pool", fix="pass pool in [0, 1] (0 by default)") <= 1.0:
            raise DataError(f"pool must be in [0, 1], got {self.pool}")
        if self.min_per_bin is not None:
            check_int(self.min_per_bin, "min_per_bin", minimum=1)

    def fitter(self, d: int, max_position: int) -> QuadraticSiteFitter:
        return QuadraticSiteFitter(d, max_position=max_position, n_bins=self.n_bins, shrinkage=self.shrinkage,
                                   pool=self.pool, min_per_bin=self.min_per_bin)


EraserMethod = Leace | Mean | Pca | Quadratic
METHOD_TYPES: dict[str, type[Leace] | type[Mean] | type[Pca] | type[Quadratic]] = {
    m.name: m for m in (Leace, Mean, Pca, Quadratic)
}
#: the options each method takes by keyword in the name form ``fit_eraser(method="pca", k=3)``
KEYWORDS = ("features", "n_freqs", "n_bins", "k", "var", "denoise")


def as_method(method: str | EraserMethod, **keywords: Any) -> EraserMethod:
    """The options object of ``method``: an object as given, or a method's name with the keywords
    of the name form (those of other methods are ignored, as they always were; ``None`` = default)."""
    given = {k: v for k, v in keywords.items() if v is not None}
    if not isinstance(method, str):
        if not isinstance(method, tuple(METHOD_TYPES.values())):
            raise ArgumentError(f"method must be a name ({', '.join(METHOD_TYPES)}) or an options object such as "
                                f"Quadratic(n_bins=8), got {type(method).__name__}")
        if given:
            raise ArgumentError(f"pass {', '.join(given)} inside the method's options, e.g. "
                                f"{type(method).__name__}({', '.join(f'{k}={v!r}' for k, v in given.items())}), not beside it")
        return method
    cls = METHOD_TYPES.get(method)
    if cls is None:
        raise DataError(f"unknown method '{method}'; use one of {', '.join(METHOD_TYPES)}")
    if "features" in given and method != "leace":  # checked as before, whichever the method
        Leace(features=given["features"])
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in given.items() if k in fields})
