"""The one language of interventions, shared by ``sweep`` and ``branches``: a name parses into an
``Intervention`` (``parse_intervention``) and resolves into hooks inside the model and/or an offline
transform of the captured activations (``resolve_intervention``).

Names: ``"baseline"`` / ``"none"`` (nothing), ``"zero"``, ``"remove"``, ``"replace:MAP"`` with MAP one
of ``shuffle[=SEED]``, ``reverse``, ``shift=K``, ``constant=P``, ``scale=F``; the fitted erasers
``"erase"`` (LEACE), ``"erase-mean"``, ``"erase-pca"``, ``"erase-quadratic"`` (offline, per layer) and
``"erase-inmodel"`` (LEACE hooks inside the model). Hook lists and callables
``(model, fit_data) -> hooks`` are interventions too.

Words: an *intervention* is given as an ``InterventionSpec`` (a name, hooks or a callable); a name
parses into an ``Intervention``; ``resolve_intervention`` makes any of them ``Resolved`` (hooks and/or
an offline transform). A sweep's *condition* is one named intervention (``probes.plan.Condition``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from pe_hooks.core.errors import DataError, SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.data import TokenData
from pe_hooks.erasers import fit_eraser
from pe_hooks.interventions import (
    PositionMap,
    constant,
    remove,
    replace,
    reverse,
    scale,
    shift,
    shuffle,
    zero,
)

InterventionSpec = None | str | Sequence[tuple[str, Any]] | Callable[[Model, TokenData], Sequence[tuple[str, Any]]]

#: The fitted erasers by name: name -> eraser method.
ERASERS = {"erase": "leace", "erase-mean": "mean", "erase-pca": "pca", "erase-quadratic": "quadratic",
           "erase-inmodel": "leace"}
REPLACE_MAPS = ("shuffle", "reverse", "shift", "constant", "scale")
BUILTIN = ("baseline", "zero", "remove", *ERASERS)
HELP = ("baseline (or none), zero, remove, replace:MAP with MAP one of shuffle, reverse, shift=K, constant=P, "
        "scale=F, erase (LEACE, offline per layer), erase-mean, erase-pca, erase-quadratic, erase-inmodel "
        "(LEACE hooks inside the model)")


class Intervention(NamedTuple):
    """A parsed intervention name: ``verb`` (``baseline``, ``none``, ``zero``, ``remove``, ``replace``,
    or an eraser name of ``ERASERS``), the position map of ``replace`` and its value."""

    verb: str
    map: str | None = None
    value: float | None = None


def parse_intervention(text: str, what: str = "intervention") -> Intervention:
    """``"zero"`` -> ``("zero", None, None)``; ``"replace:shift=3"`` -> ``("replace", "shift", 3.0)``.

    Bad names and values are a ``DataError`` naming the fix (``what`` names the option in it)."""
    s = text.strip().lower()
    if s in ("baseline", "none", "zero", "remove") or s in ERASERS:
        return Intervention(s)
    if s.startswith("replace:"):
        name, _, arg = s[len("replace:"):].partition("=")
        if name in REPLACE_MAPS:
            return Intervention("replace", name, _map_value(text, name, arg, what))
    raise DataError(f"unknown {what} {text!r}; built-in: {HELP}")


def _map_value(text: str, name: str, arg: str, what: str) -> float | None:
    """The checked value of ``replace:NAME=ARG`` (before any work is done)."""
    if name in ("shift", "scale") and not arg:
        raise DataError(f"{what} replace:{name} needs a value, e.g. replace:{name}=2")
    try:
        value = float(arg) if arg else None
    except ValueError as exc:
        raise DataError(f"bad number in {what} {text!r}: {exc}; e.g. replace:{name}=2") from exc
    if value is not None and name != "scale" and not value.is_integer():
        raise DataError(f"{what} {text!r}: {name} needs a whole number, e.g. replace:{name}=2")
    if name == "scale":
        scale(value if value is not None else 1.0)  # a finite factor > 0
    if name == "constant" and value is not None and value < 0:
        raise DataError(f"{what} {text!r}: positions start at 0; pass replace:constant=P with P >= 0")
    return value


def position_map(parsed: Intervention, positions: int | None, seed: int = 0) -> PositionMap:
    """The position map of a ``replace:MAP`` intervention; ``positions`` = positions in use (the
    length ``shuffle`` and ``reverse`` permute)."""
    arg = parsed.value
    if parsed.map in ("shuffle", "reverse") and positions is None:
        raise DataError(f"replace:{parsed.map} needs the number of positions in use; pass positions=")
    maps: dict[str, Callable[[], PositionMap]] = {
        "shuffle": lambda: shuffle(int(positions or 0), seed=int(arg) if arg is not None else seed),
        "reverse": lambda: reverse(int(positions or 0)),
        "shift": lambda: shift(int(arg or 0)),
        "constant": lambda: constant(int(arg or 0)),
        "scale": lambda: scale(float(arg or 1.0)),
    }
    return maps[str(parsed.map)]()


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
    name: str, spec: InterventionSpec, model: Model, fit_data: TokenData | None = None,
    probe_sites: list[str] | None = None, *, positions: int | None = None, fixed_mean: bool = False, seed: int = 0,
) -> Resolved:
    """Turn an intervention into hooks / a transform (fitting erasers on ``fit_data``).

    ``"erase"``, ``"erase-mean"``, ``"erase-pca"``, ``"erase-quadratic"`` fit an eraser per probed layer on clean states and
    apply it *offline* to that layer's captured activations (is position still linearly present in
    the latents after removal?). ``"erase-inmodel"`` runs the LEACE eraser hooks inside the model at
    every layer instead (later layers then see erased inputs). ``positions``: the positions in use
    (``replace:shuffle`` / ``replace:reverse`` permute them); ``fixed_mean``: ``remove`` takes one mean over
    ``range(positions)``, the same table at every cached decoding step (where the site has reference
    positions; ALiBi's mean bias is exact without).
    """
    if spec is None:
        return Resolved(HookList(label=name))
    if not isinstance(spec, str):
        if callable(spec):
            return Resolved(HookList(spec(model, fit_data), label=name))  # type: ignore[arg-type]
        return Resolved(HookList(spec, label=name))
    parsed = parse_intervention(spec)
    if parsed.verb in ("baseline", "none"):
        return Resolved(HookList(label=parsed.verb))
    if parsed.verb == "zero":
        return Resolved(zero(model))
    if parsed.verb == "remove":
        return Resolved(_remove(model, positions if fixed_mean else None))
    if parsed.verb == "replace":
        return Resolved(replace(model, position_map(parsed, positions, seed)))
    return _eraser(parsed.verb, model, fit_data, probe_sites)


def _remove(model: Model, positions: int | None) -> HookList:
    if positions is None:
        return remove(model)
    try:
        return remove(model, reference=range(positions))
    except SchemeError:  # a site without reference positions (ALiBi: the mean bias is exact)
        return remove(model)


def _eraser(verb: str, model: Model, fit_data: TokenData | None, probe_sites: list[str] | None) -> Resolved:
    """A fitted eraser: hooks inside the model (``erase-inmodel``) or an offline transform per site."""
    if fit_data is None:
        raise DataError("erasers need fit data disjoint from the probe data (n_fit > 0)")
    method = ERASERS[verb]
    if verb == "erase-inmodel":
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
        return site.affine()

    return Resolved(HookList(label=verb), transform, affine)
