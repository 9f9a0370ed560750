"""The interventions a sweep compares, named by strings: ``"baseline"``, ``"zero"``, ``"remove"``,
``"erase"`` (LEACE), ``"erase-mean"``, ``"erase-pca"``, ``"erase-quadratic"``, ``"erase-inmodel"``; or hook lists and
callables. ``resolve_intervention`` turns one into hooks inside the model and/or an offline
transform of the captured activations (fitting erasers on data disjoint from the probes').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pe_hooks.core.errors import DataError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.data import TokenData
from pe_hooks.erasers import fit_eraser
from pe_hooks.erasers.methods import SiteMap
from pe_hooks.interventions import remove, zero

VERBS: dict[str, Callable[[Model], HookList]] = {"zero": zero, "remove": remove}

InterventionSpec = None | str | Sequence[tuple[str, Any]] | Callable[[Model, TokenData], Sequence[tuple[str, Any]]]

BUILTIN = ("baseline", "zero", "remove", "erase", "erase-mean", "erase-pca", "erase-quadratic", "erase-inmodel")


@dataclass
class Resolved:
    """An intervention ready to run: hooks inside the model and/or an offline transform applied to
    the captured activations ``(hook_name, x, positions) -> x`` (erasers applied per layer)."""

    hooks: HookList
    transform: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: for an affine ``transform`` (LEACE, PCA): ``hook_name -> (mean, R, L)`` of its map
    #: ``x -> x - (x - mean) R L^T`` (``R``, ``L`` ``[d, 0]`` where the site is left alone), or ``None``
    #: for a site whose map is not affine; lets the sweep derive the erased moments from the raw ones
    affine: Callable[[str], tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] | None = None


def resolve_intervention(
    name: str, spec: InterventionSpec, model: Model, fit_data: TokenData | None, probe_sites: list[str] | None = None
) -> Resolved:
    """Turn a sweep intervention spec into hooks / a transform (fitting erasers on ``fit_data``).

    ``"erase"``, ``"erase-mean"``, ``"erase-pca"``, ``"erase-quadratic"`` fit an eraser per probed layer on clean states and
    apply it *offline* to that layer's captured activations (is position still linearly present in
    the latents after removal?). ``"erase-inmodel"`` runs the LEACE eraser hooks inside the model at
    every layer instead (later layers then see erased inputs).
    """
    if spec is None:
        return Resolved(HookList(label=name))
    if isinstance(spec, str):
        if spec == "baseline":
            return Resolved(HookList(label="baseline"))
        if spec in ("zero", "remove"):
            return Resolved(VERBS[spec](model))
        if spec.startswith("erase"):
            if fit_data is None:
                raise DataError("erasers need fit data disjoint from the probe data (n_fit > 0)")
            method = {"erase": "leace", "erase-mean": "mean", "erase-pca": "pca", "erase-quadratic": "quadratic", "erase-inmodel": "leace"}.get(spec)
            if method is None:
                raise DataError(f"unknown intervention '{spec}'; built-in: {', '.join(BUILTIN)}")
            if spec == "erase-inmodel":
                return Resolved(fit_eraser(model, fit_data, method=method, progress=False).hooks(model))
            eraser = fit_eraser(model, fit_data, method=method, progress=False, hook_names=probe_sites, sequential=False)

            def transform(hook_name: str, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
                if hook_name not in eraser.maps:
                    return x
                out: torch.Tensor = eraser.transform(x, hook_name=hook_name, positions=positions)
                return out

            def affine(hook_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
                site = eraser.maps.get(hook_name)
                if site is None:
                    empty = torch.zeros(eraser.info.d_model, 0, dtype=torch.float64)
                    return torch.zeros(eraser.info.d_model, dtype=torch.float64), empty, empty
                if not isinstance(site, SiteMap) or site.offsets is not None:
                    return None
                return site.mean, site.right, site.left

            return Resolved(HookList(label=spec), transform, affine)
        raise DataError(f"unknown intervention '{spec}'; built-in: {', '.join(BUILTIN)}")
    if callable(spec):
        return Resolved(HookList(spec(model, fit_data), label=name))  # type: ignore[arg-type]
    return Resolved(HookList(spec, label=name))
