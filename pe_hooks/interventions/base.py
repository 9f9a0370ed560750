"""The contract between the public verbs and the per-site implementations.

A *site* (``pos_embed``, ``rotary``, ``rot_qk``, ``alibi``, ``resid_pre``...) is implemented once,
in its own module, as a ``SiteOps`` object; ``pe_hooks.interventions.verbs`` lists them, resolves
the model's scheme, checks the options against the site and calls it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import torch

from pe_hooks.core.errors import ArgumentError, SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_indices
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.sites.registry import site_advice
from pe_hooks.sites.scheme import PositionalScheme

Layers = int | list[int] | tuple[int, ...] | range | None
Heads = int | list[int] | tuple[int, ...] | None
Bands = Sequence[int] | torch.Tensor | None
Stacks = str | Sequence[str] | None


@dataclass(frozen=True)
class Target:
    """Options common to every verb, validated against the model's sites.

    Attributes:
        layers: layers to act on (all layers when the user gave none).
        heads: attention heads to act on, or ``None`` for all (only where meaningful).
        exempt_first: leave position 0 (the BOS / first token) untouched.
        stacks: encoder-decoder models: the stacks to act on (``"encoder"``, ``"decoder"``), or
            ``None`` for every stack.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...] | None = None
    exempt_first: bool = False
    stacks: tuple[str, ...] | None = None

    @classmethod
    def resolve(
        cls, sites: PositionalScheme, layers: Layers, heads: Heads, exempt_first: bool, stacks: Stacks = None
    ) -> Target:
        lay = tuple(range(sites.n_layers)) if layers is None else tuple(sites.check_layers(layers))
        hd: tuple[int, ...] | None = None
        if heads is not None:
            hd = tuple(check_indices(heads, "heads", sites.n_heads, what="the model has heads"))
        if not isinstance(exempt_first, bool):
            raise ArgumentError(f"exempt_first must be True or False, got {exempt_first!r}")
        return cls(layers=lay, heads=hd, exempt_first=exempt_first, stacks=_stacks(sites, stacks))


def _stacks(sites: PositionalScheme, stacks: Stacks) -> tuple[str, ...] | None:
    if stacks is None:
        return None
    given = (stacks,) if isinstance(stacks, str) else tuple(stacks)
    have = sites.stacks
    bad = [s for s in given if s not in have]
    if not given or bad or len(set(given)) != len(given):
        raise SchemeError(
            f"stacks={stacks!r}: {sites.model_name} has the positional stacks {', '.join(map(repr, have)) or 'none'}; "
            "pass some of them once each (e.g. stacks='encoder'), or leave stacks= out for all"
        )
    return given


@dataclass(frozen=True)
class SiteOptions:
    """Options that only some sites understand (``None`` = not given).

    Attributes:
        bands: rotary frequency bands to act on (indices into ``inv_freq``, 0 = highest).
        keep_bands: ``replace`` on rotary: only these bands rotate (by the new positions).
        reference: ``remove``: the positions whose mean signal every token gets.
    """

    bands: Bands = None
    keep_bands: Bands = None
    reference: Sequence[int] | None = None

    def given(self) -> list[str]:
        """Names of the options that were passed."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


class SiteOps(Protocol):
    """One positional site's implementation of the four verbs.

    Each method returns a ``HookList`` or raises ``SchemeError`` naming what would work.
    ``accepts[verb]`` lists the ``SiteOptions`` fields the site reads for that verb; the verbs
    reject any other option before calling the site.
    """

    @property
    def name(self) -> str:
        """The site's name (what users pass as ``site=``)."""
        ...

    @property
    def description(self) -> str:
        """One line describing where the site acts."""
        ...

    @property
    def accepts(self) -> Mapping[str, tuple[str, ...]]: ...

    def zero(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList: ...

    def remove(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList: ...

    def replace(
        self, model: Model, sites: PositionalScheme, target: Target, positions: PositionMap, options: SiteOptions
    ) -> HookList: ...

    def project_out(
        self, model: Model, sites: PositionalScheme, target: Target, basis: torch.Tensor | None, k: int | None
    ) -> HookList: ...


def not_supported(site: str, verb: str, sites: PositionalScheme, alternative: str | None = None) -> SchemeError:
    """The standard error for a verb that does not apply at a site on this model; the advice is
    the registry's (``site_advice``) unless ``alternative`` is given."""
    advice = site_advice(site, sites.family) if alternative is None else alternative
    return SchemeError(
        f"'{verb}' at site '{site}' does not apply to {sites.model_name} "
        f"({sites.scheme.value} positions, {sites.architecture}). {advice}"
    )


def fmt_layers(layers: tuple[int, ...], sites: PositionalScheme) -> str:
    """``"all"`` or ``"0,2"``: the layers part of a hook list's label."""
    return "all" if len(layers) == sites.n_layers else ",".join(map(str, layers))
