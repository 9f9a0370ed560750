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

from collections.abc import Callable, Sequence
from typing import Any

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.hooklist import HookList, bind_to_model
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_indices, check_int, check_model
from pe_hooks.interventions.alibi import AlibiScores
from pe_hooks.interventions.base import Bands, Heads, Layers, SiteOps, SiteOptions, Stacks, Target
from pe_hooks.interventions.learned import PosEmbed
from pe_hooks.interventions.positions import PositionMap, as_position_map
from pe_hooks.interventions.relative import RelativeBias
from pe_hooks.interventions.residual import Residual
from pe_hooks.interventions.rot_qk import RotaryQK
from pe_hooks.interventions.rotary import RotaryTables
from pe_hooks.sites.inspect import inspect
from pe_hooks.sites.registry import ERASER_ADVICE, default_site
from pe_hooks.sites.scheme import RESID_SITES, PositionalScheme

#: Every site the verbs dispatch on, by name (what users pass as ``site=``).
SITES: dict[str, SiteOps] = {
    ops.name: ops
    for ops in (
        PosEmbed(), RotaryTables(), RotaryQK(), AlibiScores(), RelativeBias(),
        Residual("resid_pre"), Residual("resid_mid"), Residual("resid_post"),
    )
}

Positions = PositionMap | int | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def _site(model: Model, site: str, verb: str = "this verb") -> tuple[PositionalScheme, SiteOps]:
    check_model(model, verb)
    if not isinstance(site, str):
        raise SchemeError(f"site must be a string such as 'auto', got {site!r}; known sites: {', '.join(sorted(SITES))}")
    sites = inspect(model)
    if site not in RESID_SITES:
        sites.require_positions()  # a refused model: only its residual sites
    if site == "auto":
        auto = default_site(sites.family)
        if auto is None:
            raise SchemeError(
                f"{sites.model_name} has no explicit positional site ({sites.scheme.value}). {ERASER_ADVICE}"
            )
        site = auto
    if site not in SITES:
        raise SchemeError(f"unknown site '{site}'; known sites: {', '.join(sorted(SITES))}")
    return sites, SITES[site]


#: sites that act per stack of an encoder-decoder model (``stacks=``)
STACK_SITES = ("pos_embed", "relative")


def _target(sites: PositionalScheme, ops: SiteOps, layers: Layers, heads: Heads, exempt_first: bool, stacks: Stacks) -> Target:
    if stacks is not None and ops.name not in STACK_SITES:
        raise SchemeError(
            f"stacks= does not apply at site '{ops.name}'; only site(s) {', '.join(map(repr, STACK_SITES))} act per "
            "stack (encoder / decoder) -- leave stacks= out"
        )
    return Target.resolve(sites, layers, heads, exempt_first, stacks)


def _options(verb: str, ops: SiteOps, sites: PositionalScheme, options: SiteOptions) -> SiteOptions:
    """Reject options the chosen site does not read for ``verb``, naming the sites that do."""
    for band_opt in ("bands", "keep_bands"):
        value = getattr(options, band_opt)
        if value is not None and len(torch.as_tensor(value).flatten()) == 0:
            raise SchemeError(f"{verb}(..., {band_opt}=[]) selects no frequency band; pass None for all bands or at least one")
        if value is not None and torch.as_tensor(value).dtype == torch.bool and not bool(torch.as_tensor(value).any()):
            raise SchemeError(
                f"{verb}(..., {band_opt}=<boolean mask, all False>) selects no frequency band (the hooks would do "
                "nothing); pass None for all bands, or a mask with at least one True"
            )
        if value is not None and torch.as_tensor(value).is_floating_point():
            raise SchemeError(f"{band_opt} must be integer band indices or a boolean mask, got {value!r}")
    bad = [name for name in options.given() if name not in ops.accepts.get(verb, ())]
    if bad:
        where = sorted(n for n, o in SITES.items() if all(b in o.accepts.get(verb, ()) for b in bad))
        opts = ", ".join(f"{b}=" for b in bad)
        raise SchemeError(
            f"{verb}(..., {opts}) does not apply at site '{ops.name}' ({sites.model_name}, "
            f"{sites.scheme.value} positions): "
            + (f"only site(s) {', '.join(repr(w) for w in where)} accept it" if where else f"no site accepts it with {verb}")
        )
    return options


def zero(
    model: Model,
    *,
    site: str = "auto",
    layers: Layers = None,
    heads: Heads = None,
    exempt_first: bool = False,
    bands: Bands = None,
    stacks: Stacks = None,
) -> HookList:
    """Set the positional signal at ``site`` to its identity (no position at all).

    Args:
        model: a TransformerBridge or HookedTransformer.
        site: ``"auto"`` (the model's positional site), ``"pos_embed"``, ``"rotary"``,
            ``"rot_qk"`` or ``"alibi"``.
        layers: layers to act on (attention sites); all by default.
        heads: heads to act on (``alibi``, ``rot_qk``: whole KV groups on GQA models); all by default.
        exempt_first: leave position 0 / BOS untouched.
        stacks: encoder-decoder models: ``"encoder"`` and/or ``"decoder"`` (whose positions to
            edit); every stack by default.
        bands: rotary sites only: act on these frequency bands (indices into ``inv_freq``, 0 = the
            highest frequency, or a boolean mask); the others keep the model's rotation.
            ``pe_hooks.frequency_bands(model, "high", 8)`` picks bands.

    Raises:
        SchemeError: the verb or an option does not apply to the model's site (the message
            names what does).
    """
    sites, ops = _site(model, site, "zero")
    opts = _options("zero", ops, sites, SiteOptions(bands=bands))
    return bind_to_model(ops.zero(model, sites, _target(sites, ops, layers, heads, exempt_first, stacks), opts), model)


def remove(
    model: Model,
    *,
    site: str = "auto",
    layers: Layers = None,
    heads: Heads = None,
    exempt_first: bool = False,
    bands: Bands = None,
    reference: Sequence[int] | None = None,
    stacks: Stacks = None,
) -> HookList:
    """Mean-ablate position: every token gets the average positional signal.

    Learned: each position's W_pos row is replaced by the mean row over the positions the row uses.
    Rotary: the mean rotation over the reference positions (high frequencies damped). ALiBi: the
    mean bias per query, which is exactly ``zero``. Unlike ``zero`` this keeps the average the
    model expects.

    Args:
        model: a TransformerBridge or HookedTransformer.
        site: ``"auto"`` (the model's positional site), ``"pos_embed"``, ``"rotary"``,
            ``"rot_qk"`` or ``"alibi"``.
        layers: layers to act on (attention sites); all by default.
        heads: heads to act on (``alibi``, ``rot_qk``); all by default.
        exempt_first: leave position 0 / BOS untouched.
        stacks: encoder-decoder models: ``"encoder"`` and/or ``"decoder"`` (whose positions to
            edit); every stack by default.
        bands: rotary sites only: act on these frequency bands only.
        reference: ``pos_embed`` and rotary sites: average over these positions instead of
            ``0..max t`` of each row of the current forward (a left-padded row averages its own
            positions, so it gets what it gets alone); pass ``range(N)`` when generating with a
            KV cache.

    Raises:
        SchemeError: the verb or an option does not apply to the model's site.
    """
    if reference is not None:
        reference = check_indices(reference, "reference", None, what="positions", unique=False)
    sites, ops = _site(model, site, "remove")
    opts = _options("remove", ops, sites, SiteOptions(bands=bands, reference=reference))
    return bind_to_model(ops.remove(model, sites, _target(sites, ops, layers, heads, exempt_first, stacks), opts), model)


def replace(
    model: Model,
    positions: Positions,
    *,
    site: str = "auto",
    layers: Layers = None,
    heads: Heads = None,
    exempt_first: bool = False,
    bands: Bands = None,
    keep_bands: Bands = None,
    stacks: Stacks = None,
) -> HookList:
    """Give the model another position signal: ``positions`` maps each real position ``t`` to a
    new one.

    Args:
        model: a TransformerBridge or HookedTransformer.
        positions: a position map (``constant``, ``shift``, ``shuffle``, ``reverse``, ``scale``,
            ``table``), an int (constant), a tensor (lookup table) or a callable on position tensors.
        site: ``"auto"`` (the model's positional site), ``"pos_embed"``, ``"rotary"``,
            ``"rot_qk"`` or ``"alibi"``.
        layers: layers to act on (attention sites); all by default.
        heads: heads to act on (``alibi``, ``rot_qk``); all by default.
        exempt_first: leave position 0 / BOS untouched.
        stacks: encoder-decoder models: ``"encoder"`` and/or ``"decoder"`` (whose positions to
            edit); every stack by default.
        bands: rotary sites only: only these bands get the new positions; the rest keep the
            model's rotation.
        keep_bands: rotary sites only: only these bands rotate (by the new positions); the rest
            get no rotation. Give ``bands`` or ``keep_bands``, not both.

    Raises:
        SchemeError: the verb or an option does not apply to the model's site.
    """
    sites, ops = _site(model, site, "replace")
    pmap = as_position_map(positions)
    opts = _options("replace", ops, sites, SiteOptions(bands=bands, keep_bands=keep_bands))
    hooks = ops.replace(model, sites, _target(sites, ops, layers, heads, exempt_first, stacks), pmap, opts)
    return bind_to_model(hooks, model)


def project_out(
    model: Model,
    basis: Any = None,
    *,
    k: int | None = None,
    site: str = "auto",
    layers: Layers = None,
    exempt_first: bool = False,
    stacks: Stacks = None,
) -> HookList:
    """Project the activation at ``site`` onto the orthogonal complement of a positional subspace.

    Args:
        model: a TransformerBridge or HookedTransformer.
        basis: a ``[k, d]`` tensor of directions; ``None`` = the top-``k`` principal components of
            W_pos (learned models); or a fitted ``PositionEraser`` (its hooks are returned).
        k: how many directions to use (``None``: all of ``basis``, or the fewest PCs of W_pos
            explaining 95% of its variance).
        site: ``"auto"`` (``pos_embed`` on learned models) or ``"resid_pre"`` / ``"resid_mid"`` /
            ``"resid_post"``.
        layers: residual sites: layers to act on; all by default.
        exempt_first: leave position 0 / BOS untouched.
        stacks: encoder-decoder models: ``"encoder"`` and/or ``"decoder"`` (whose positions to
            edit); every stack by default.

    The returned ``HookList`` carries the orthonormal directions it removes as ``.basis``.
    """
    check_model(model, "project_out")
    if basis is not None and hasattr(basis, "hooks") and callable(basis.hooks):
        out = basis.hooks(model)
        return out if isinstance(out, HookList) else HookList(out, label="eraser")
    sites, ops = _site(model, site, "project_out")
    b = None
    if basis is not None:
        try:
            raw = torch.as_tensor(basis)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SchemeError(
                f"cannot use a {type(basis).__name__} as basis; pass a real [k, d] tensor, a fitted PositionEraser or None"
            ) from exc
        if raw.dtype == torch.bool or raw.is_complex():
            raise SchemeError(f"basis must be a real [k, d] tensor, got {raw.dtype}")
        b = raw.to(torch.float32)
        if not bool(torch.isfinite(b).all()):
            raise SchemeError("basis contains NaN or inf; pass finite directions")
    if k is not None:
        available = sites.d_model if b is None else (b.shape[0] if b.ndim == 2 else 1)
        if b is None and sites.n_ctx:
            available = min(available, sites.n_ctx - 1)
        check_int(k, "k", minimum=1, maximum=available,
                  fix="k counts the directions to remove (None: all of basis, or 95% of W_pos's variance)")
    hooks = ops.project_out(model, sites, _target(sites, ops, layers, None, exempt_first, stacks), b, k)
    out = bind_to_model(hooks, model)
    out.basis = hooks.basis
    return out
