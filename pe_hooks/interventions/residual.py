"""Residual-stream sites ``"resid_pre"``, ``"resid_mid"``, ``"resid_post"``: ``project_out`` only.

``x -> x - (x B^T) B`` for an orthonormal basis ``B`` ``[k, d]`` at the chosen layers (the
orthogonal projection onto the complement of span(B)). Fitted, position-aware erasure of the
residual stream is ``pe_hooks.fit_eraser``; ``zero``/``remove``/``replace`` have no meaning here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.interventions.base import SiteOptions, Target, fmt_layers
from pe_hooks.interventions.learned import orthonormal_basis
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.sites.positions import position_source
from pe_hooks.sites.scheme import PositionalScheme


class Residual:
    """One residual site (``resid_pre``/``resid_mid``/``resid_post``)."""

    description = "residual stream (project_out of a given subspace)"
    accepts: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, site: str) -> None:
        self.name = site

    def _unsupported(self, verb: str) -> SchemeError:
        return SchemeError(
            f"'{verb}' does not apply at the residual site '{self.name}': position there is not a separate "
            f"signal. Use pe_hooks.project_out(model, basis, site='{self.name}') with a positional basis, or fit "
            "an eraser: pe_hooks.fit_eraser(model, data)."
        )

    def zero(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        raise self._unsupported("zero")

    def remove(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        raise self._unsupported("remove")

    def replace(
        self, model: Model, sites: PositionalScheme, target: Target, positions: PositionMap, options: SiteOptions
    ) -> HookList:
        raise self._unsupported("replace")

    def project_out(
        self, model: Model, sites: PositionalScheme, target: Target, basis: torch.Tensor | None, k: int | None
    ) -> HookList:
        if basis is None:
            raise SchemeError(
                f"project_out at '{self.name}' needs a basis [k, {sites.d_model}] or a fitted eraser "
                "(pe_hooks.fit_eraser(model, data)); only the learned pos_embed site has a default basis (PCs of W_pos)"
            )
        if self.name not in sites.resid:
            raise SchemeError(f"'{self.name}' does not exist on {sites.architecture}; available: {', '.join(sites.resid)}")
        b = orthonormal_basis(basis, sites.d_model, k)
        src = position_source(model, sites) if target.exempt_first else None

        def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
            bb = b.to(x.device, torch.float32)
            xf = x.float()
            out = (xf - (xf @ bb.T) @ bb).to(x.dtype)
            if src is not None:
                out = torch.where((src.get(x) == 0)[..., None], x, out)
            return out

        pairs: list[tuple[str, HookFn]] = list(src.hooks) if src is not None else []
        pairs += [(sites.resid[self.name][i], fn) for i in target.layers]
        label = f"project_out({self.name}, k={b.shape[0]}, layers={fmt_layers(target.layers, sites)})"
        return HookList(pairs, label=label, basis=b)
