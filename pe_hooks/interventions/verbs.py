"""The four public verbs: ``zero``, ``remove``, ``replace``, ``project_out``.

Each reads the model's ``PositionalScheme`` (``pe_hooks.inspect``), picks the site (the model's
own positional site by default), and returns a ``HookList`` of TransformerLens ``(name, fn)``
pairs. Nothing is attached until you pass the list to TransformerLens.

=========  ==========================  ==============================  ==========================
verb       learned (``pos_embed``)      rotary (``rotary`` / ``rot_qk``)  ALiBi (``alibi``)
=========  ==========================  ==============================  ==========================
zero       W_pos rows -> 0              angle -> 0 (cos=1, sin=0)        bias -> 0
remove     mean W_pos row for all       one shared position for all     mean bias over keys
replace    W_pos[f(t)]                  angle of f(t)                   bias of f(t)
project    drop a subspace of W_pos     -                               -
=========  ==========================  ==============================  ==========================

``zero`` sets the positional signal to its identity element; ``remove`` (mean-ablation) keeps the
*average* positional signal the model expects and drops only what varies with position, which
stays closer to the training distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pe_hooks.errors import SchemeError
from pe_hooks.interventions.base import SITES, Target
from pe_hooks.interventions.hooklist import HookList
from pe_hooks.interventions.positions import PositionMap, as_position_map
from pe_hooks.sites import Scheme, inspect
from pe_hooks.types import Model

DEFAULT_SITE: dict[Scheme, str] = {
    Scheme.LEARNED: "pos_embed",
    Scheme.ROTARY: "rotary",
    Scheme.ALIBI: "alibi",
}

Layers = int | list[int] | tuple[int, ...] | range | None
Heads = int | list[int] | tuple[int, ...] | None


def _site(model: Model, site: str) -> tuple[Any, Any]:
    scheme = inspect(model)
    if site == "auto":
        if scheme.scheme not in DEFAULT_SITE:
            raise SchemeError(
                f"{scheme.model_name} has no explicit positional site ({scheme.scheme.value}); use a "
                "residual-stream eraser instead: pe_hooks.fit_eraser(model, data)"
            )
        site = DEFAULT_SITE[scheme.scheme]
        if site == "rotary" and not scheme.layer_cos and scheme.rot_q:
            site = "rot_qk"  # TL 3.x: no cos/sin hooks
    _load_sites()
    if site not in SITES:
        raise SchemeError(f"unknown site '{site}'; known sites: {', '.join(sorted(SITES))}")
    return scheme, SITES[site]


def _load_sites() -> None:
    # importing the site modules registers them (kept lazy to avoid import cycles)
    import importlib

    for mod in ("learned", "rotary", "alibi", "residual"):
        try:
            importlib.import_module(f"pe_hooks.interventions.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pe_hooks.interventions.{mod}":
                raise


def zero(
    model: Model,
    *,
    site: str = "auto",
    layers: Layers = None,
    heads: Heads = None,
    exempt_first: bool = False,
    **kw: Any,
) -> HookList:
    """Set the positional signal at ``site`` to its identity (no position at all).

    Args:
        model: a TransformerBridge or HookedTransformer.
        site: ``"auto"`` (the model's positional site), ``"pos_embed"``, ``"rotary"``,
            ``"rot_qk"``, or ``"alibi"``.
        layers: layers to act on (attention sites); all by default.
        heads: heads to act on (where the site is per-head); all by default.
        exempt_first: leave position 0 / BOS untouched.
        **kw: site-specific options (e.g. ``bands=`` for rotary frequency bands).
    """
    scheme, ops = _site(model, site)
    return ops.zero(model, scheme, Target.resolve(scheme, layers, heads, exempt_first), **kw)


def remove(
    model: Model,
    *,
    site: str = "auto",
    layers: Layers = None,
    heads: Heads = None,
    exempt_first: bool = False,
    **kw: Any,
) -> HookList:
    """Mean-ablate position: every token gets the average positional signal.

    Learned: each position's W_pos row is replaced by the mean row over the positions in use
    (or over ``reference=`` positions). Rotary/ALiBi: the position-independent equivalent (see
    the site module's docstring). Unlike ``zero`` this keeps the average the model expects.
    """
    scheme, ops = _site(model, site)
    return ops.remove(model, scheme, Target.resolve(scheme, layers, heads, exempt_first), **kw)


def replace(
    model: Model,
    positions: PositionMap | int | torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    *,
    site: str = "auto",
    layers: Layers = None,
    heads: Heads = None,
    exempt_first: bool = False,
    **kw: Any,
) -> HookList:
    """Give the model another position signal: ``positions`` maps each real position ``t``
    to a new one (see ``pe_hooks.interventions.positions``: ``constant``, ``shift``,
    ``shuffle``, ``reverse``, ``scale``, ``table``; an int means constant, a tensor a table).
    """
    scheme, ops = _site(model, site)
    pmap = as_position_map(positions)
    return ops.replace(model, scheme, Target.resolve(scheme, layers, heads, exempt_first), pmap, **kw)


def project_out(
    model: Model,
    basis: Any = None,
    *,
    k: int | None = None,
    site: str = "auto",
    layers: Layers = None,
    exempt_first: bool = False,
    **kw: Any,
) -> HookList:
    """Project the activation at ``site`` onto the orthogonal complement of a positional
    subspace: ``basis`` (a ``[k, d]`` tensor of directions), or the top-``k`` principal
    components of W_pos (learned models, ``basis=None``), or a fitted ``PositionEraser``
    (its hooks are returned).
    """
    if basis is not None and hasattr(basis, "hooks") and callable(basis.hooks):
        out = basis.hooks()
        return out if isinstance(out, HookList) else HookList(out, label="eraser")
    scheme, ops = _site(model, site)
    b = None if basis is None else torch.as_tensor(basis, dtype=torch.float32)
    return ops.project_out(model, scheme, Target.resolve(scheme, layers, None, exempt_first), b, k=k, **kw)
