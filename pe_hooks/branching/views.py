"""Views of one layer's branch latents: raw, position-erased, intervened, early.

- ``raw``: the latents as they are;
- ``erased``: through a position eraser fitted on *other* text (``pe_hooks.erasers.fit_eraser``
  on the reference corpus; any object with ``.transform(x, layer=, positions=)`` is accepted);
- ``erased (branches, out-of-sample)``: through erasers fitted on the branches themselves,
  cross-fitted by branch (``erase_crossfit``: each group of branches is erased by an eraser that
  never saw it);
- ``intervened``: new branches generated *and* read under an intervention (``zero``/``remove``/
  ``replace``);
- ``early``: the same tokens at an early layer.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import signature as _signature
from typing import Any, Protocol

import numpy as np

from pe_hooks.branching.latents import BranchLatents, View
from pe_hooks.core.errors import DataError
from pe_hooks.erasers import fit_on_arrays


class Eraser(Protocol):
    """Anything that erases: ``PositionEraser``, or ``fit_on_arrays(...)``'s result."""

    def transform(self, x: Any, *, positions: Any = None) -> Any: ...


def leace_on_arrays(x: np.ndarray, position: np.ndarray) -> Eraser:
    """The default eraser fitted on branches: LEACE on 4 Fourier features of position."""
    return fit_on_arrays(x, position, method="leace", n_freqs=4, exempt_first=False)


def erase_crossfit(
    x: np.ndarray,
    branch: np.ndarray,
    position: np.ndarray,
    *,
    fit: Callable[[np.ndarray, np.ndarray], Eraser] = leace_on_arrays,
    n_folds: int = 4,
) -> np.ndarray:
    """Erase position with erasers fitted on the branches themselves, out of sample.

    Branches are split into ``n_folds`` groups; the tokens of each group are erased by
    ``fit(x_rest, position_rest)`` fitted on the other groups only, so no token is erased by an
    eraser that saw it (an in-sample eraser would also remove the noise of its own fit).
    """
    ids = np.unique(branch)
    n_folds = min(n_folds, len(ids))
    if n_folds < 2:
        raise DataError("cross-fitting needs at least two branches")
    out = np.empty_like(np.asarray(x, dtype=np.float32))
    for f in range(n_folds):
        held = np.isin(branch, ids[f::n_folds])
        er = fit(x[~held], position[~held])
        out[held] = np.asarray(er.transform(x[held], positions=position[held]))
    return out


def make_views(
    lat: BranchLatents,
    layer: int,
    *,
    eraser: Eraser | None = None,
    eraser_name: str = "erased",
    crossfit: bool | Callable[[np.ndarray, np.ndarray], Eraser] = False,
    intervened: BranchLatents | None = None,
    intervened_name: str = "intervened",
    early: int | None = None,
) -> dict[str, View]:
    """The views of one layer (see the module docstring); ``raw`` always comes first.

    ``eraser.transform`` is called as ``transform(x, layer=layer, positions=p)`` (a
    ``PositionEraser``), or ``transform(x, positions=p)`` if it has no ``layer`` argument or was
    fitted on arrays (``fit_on_arrays``: one site for any layer).
    """
    x, b, p = lat.view(layer)
    views: dict[str, View] = {"raw": (x, b, p)}
    if eraser is not None:
        transform: Any = eraser.transform
        # an eraser fitted on arrays (``fit_on_arrays``) has one site, named "array", for any layer
        on_arrays = set(getattr(eraser, "maps", {}) or {}) == {"array"}
        takes_layer = "layer" in _signature(transform).parameters and not on_arrays
        xe = transform(x, layer=layer, positions=p) if takes_layer else transform(x, positions=p)
        views[eraser_name] = (np.asarray(xe), b, p)
    if crossfit:
        fit = crossfit if callable(crossfit) else leace_on_arrays
        views["erased (branches, out-of-sample)"] = (erase_crossfit(x, b, p, fit=fit), b, p)
    if intervened is not None:
        views[intervened_name] = intervened.view(layer)
    if early is not None:
        views[f"early (layer {early})"] = lat.view(early)
    return views

