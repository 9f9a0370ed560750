"""The contract between the public verbs and the per-site implementations.

A *site* (``pos_embed``, ``rotary``, ``rot_qk``, ``alibi``, ``resid_pre``...) is implemented once,
in its own module, as a ``SiteOps`` object registered with ``register_site``. The verbs in
``pe_hooks.interventions.verbs`` resolve the model's scheme, pick the site and call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from pe_hooks.errors import SchemeError
from pe_hooks.interventions.hooklist import HookList
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.sites.scheme import PositionalScheme
from pe_hooks.types import Model


@dataclass(frozen=True)
class Target:
    """Options common to every verb, validated against the scheme.

    Attributes:
        layers: layers to act on (all layers when the user gave none).
        heads: attention heads to act on, or ``None`` for all (only where meaningful).
        exempt_first: leave position 0 (the BOS / first token) untouched.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...] | None = None
    exempt_first: bool = False

    @classmethod
    def resolve(
        cls,
        scheme: PositionalScheme,
        layers: int | list[int] | tuple[int, ...] | range | None,
        heads: int | list[int] | tuple[int, ...] | None,
        exempt_first: bool,
    ) -> Target:
        if layers is None:
            lay = tuple(range(scheme.n_layers))
        else:
            lay = tuple(scheme.check_layers([layers] if isinstance(layers, int) else list(layers)))
        hd: tuple[int, ...] | None = None
        if heads is not None:
            hd = (heads,) if isinstance(heads, int) else tuple(heads)
            bad = [h for h in hd if not 0 <= h < scheme.n_heads]
            if bad:
                raise IndexError(f"heads {bad} do not exist: the model has heads 0..{scheme.n_heads - 1}")
        return cls(layers=lay, heads=hd, exempt_first=exempt_first)


class SiteOps(Protocol):
    """One positional site's implementation of the four verbs.

    Each method returns a ``HookList`` or raises ``SchemeError`` naming what would work.
    """

    @property
    def name(self) -> str:
        """The site's name (what users pass as ``site=``)."""
        ...

    @property
    def description(self) -> str:
        """One line describing where the site acts."""
        ...

    def zero(self, model: Model, scheme: PositionalScheme, target: Target, **kw: Any) -> HookList: ...

    def remove(self, model: Model, scheme: PositionalScheme, target: Target, **kw: Any) -> HookList: ...

    def replace(
        self, model: Model, scheme: PositionalScheme, target: Target, positions: PositionMap, **kw: Any
    ) -> HookList: ...

    def project_out(
        self, model: Model, scheme: PositionalScheme, target: Target, basis: torch.Tensor, **kw: Any
    ) -> HookList: ...


SITES: dict[str, SiteOps] = {}


def register_site(ops: SiteOps) -> SiteOps:
    """Add a site implementation to the table the verbs dispatch on."""
    SITES[ops.name] = ops
    return ops


def not_supported(site: str, verb: str, scheme: PositionalScheme, alternative: str) -> SchemeError:
    """The standard error for a verb that does not apply at a site on this model."""
    return SchemeError(
        f"'{verb}' at site '{site}' does not apply to {scheme.model_name} "
        f"({scheme.scheme.value} positions, {scheme.architecture}). {alternative}"
    )
