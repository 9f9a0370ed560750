"""Site ``"rot_qk"``: per-head rotary edits at ``attn.hook_rot_q/k`` (the only rotary site on TL 3.x).

The post-rotation queries/keys are rebuilt from the pre-rotation ``attn.hook_q/k`` with the new
tables, for chosen heads (whole key groups on GQA models). Positions are decoded from the angle
between each pre- and post-rotation pair. The verbs and their options are those of the
``"rotary"`` site (``pe_hooks.interventions.rotary``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from pe_hooks.core.errors import DataError, SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.interventions.base import Bands, Target, fmt_layers, not_supported
from pe_hooks.interventions.rotary import RotaryVerbs, require_rotary, rotating
from pe_hooks.interventions.rotary_bands import band_mask
from pe_hooks.interventions.rotary_tables import SharedRule, TableRule, mixed_bands, pair_parts, rotate_bands
from pe_hooks.sites.inspect import rotary_frequencies
from pe_hooks.sites.rotary_positions import DECODE_LIMIT, decode_plan, decode_positions, residual, undecodable
from pe_hooks.sites.scheme import PositionalScheme


def pair_angles(x: torch.Tensor, y: torch.Tensor, half: int, pairs: str = "half") -> torch.Tensor:
    """Per-band rotation angle ``[b, s, half]`` from pre-rotation ``x`` to post-rotation ``y`` (``[b, s, h, d]``)."""
    x1, x2 = (v.float() for v in pair_parts(x, half, pairs))
    y1, y2 = (v.float() for v in pair_parts(y, half, pairs))
    cross = (x1 * y2 - x2 * y1).sum(dim=2)  # sum over heads: robust to small components
    dot = (x1 * y1 + x2 * y2).sum(dim=2)
    return torch.atan2(cross, dot)


#: what still edits the rotation when ``rot_qk`` cannot: the cos/sin tables (TL 4), or nothing (TL 3)
TABLES_ADVICE = "use site='rotary' (per-layer cos/sin tables)"
NO_TABLES_ADVICE = ("this model has no cos/sin tables to edit instead (TransformerLens 3.x); residual erasers "
                    "(pe_hooks.fit_eraser) still work")


def _rotation_error(x: torch.Tensor, y: torch.Tensor, ang: torch.Tensor, pairs: str) -> float:
    """Largest ``|y - scale * rotate(x, ang)|`` (``ang`` ``[b, s, half]``, one scale for the tensor)."""
    x1, x2 = (v.float() for v in pair_parts(x, ang.shape[-1], pairs))
    y1, y2 = (v.float() for v in pair_parts(y, ang.shape[-1], pairs))
    c, s = torch.cos(ang)[:, :, None], torch.sin(ang)[:, :, None]
    r1, r2 = x1 * c - x2 * s, x2 * c + x1 * s
    scale = (y1 * r1 + y2 * r2).sum() / (r1 * r1 + r2 * r2).sum().clamp_min(1e-30)
    return float(torch.maximum((y1 - scale * r1).abs().max(), (y2 - scale * r2).abs().max()))


def check_pair(
    x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, inv: torch.Tensor, pairs: str, angles: torch.Tensor | None = None,
    advice: str = TABLES_ADVICE,
) -> None:
    """``y`` must be ``x`` rotated by ``t w`` (up to a scale): else the pre-rotation hook is not
    what the model rotates, and an edit rebuilt from it would be silently wrong. ``angles``: the
    pair's own per-band angles (``pair_angles``); where ``y`` is a rotation of ``x`` by them but by
    no integer position's, the positions are past the decoding limit (or fractional) and the error
    says so, rather than blaming the model."""
    tol = 1e-3 * (1.0 + float(y.abs().max()))
    err = _rotation_error(x, y, t[..., None].float() * inv, pairs)
    if err <= tol:
        return
    if angles is not None and _rotation_error(x, y, angles, pairs) <= tol:
        raise undecodable("the rotation angles of hook_rot_q/k", float(residual(t, angles, inv).max()), DECODE_LIMIT,
                          "hook_q/k or hook_rot_q/k")
    raise DataError(
        f"hook_rot_q/k are not a rotation of the pre-rotation q/k on this model (max error {err:.2g}): "
        f"site='rot_qk' cannot rebuild them; {advice}"
    )


class RotaryQK(RotaryVerbs):
    """Site ``"rot_qk"``: re-rotate q/k per head at ``attn.hook_rot_q/k`` from ``attn.hook_q/k``."""

    name: ClassVar[str] = "rot_qk"
    description: ClassVar[str] = "post-rotation queries/keys (blocks.i.attn.hook_rot_q/k), per head"

    def _kv_heads(self, sites: PositionalScheme, heads: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if heads is None:
            return None
        group = sites.n_heads // sites.n_kv_heads
        if group == 1:
            return heads
        groups = {h // group for h in heads}
        whole = {g for g in groups if all(g * group + i in heads for i in range(group))}
        if whole != groups:
            listing = ", ".join(f"{list(range(g * group, (g + 1) * group))}" for g in range(sites.n_kv_heads))
            raise SchemeError(
                f"{sites.model_name} shares each key head among {group} query heads (GQA); a per-head "
                f"rotary edit must cover whole groups: {listing}"
            )
        return tuple(sorted(groups))

    def _build(self, model: Model, sites: PositionalScheme, target: Target, rule: TableRule, bands: Bands, verb: str) -> HookList:
        require_rotary(sites, self.name, verb)
        if not sites.rot_q:
            raise not_supported(self.name, verb, sites)
        kv_heads = self._kv_heads(sites, target.heads)
        pairs: list[tuple[str, HookFn]] = []
        shared = SharedRule(rule)
        layout = sites.rotary_layout.pairs if sites.rotary_layout else "half"
        for layer in rotating(sites, target, self.name, verb):
            inv, scaling = rotary_frequencies(model, layer)
            mask = band_mask(bands, inv.numel())
            for which, heads in (("q", target.heads), ("k", kv_heads)):
                store: dict[str, torch.Tensor] = {}
                pre = (sites.pre_rot_q if which == "q" else sites.pre_rot_k)[layer]
                post = (sites.rot_q if which == "q" else sites.rot_k)[layer]
                if pre not in model.hook_dict:
                    raise not_supported(self.name, verb, sites, f"the pre-rotation hook {pre} does not exist here; use site='rotary'.")
                pairs.append((pre, _stash(store)))
                advice = TABLES_ADVICE if sites.rotary_cos else NO_TABLES_ADVICE
                pairs.append((post, _requery(store, shared, inv, scaling, mask, layout, heads, target.exempt_first, advice)))
        return HookList(pairs, label=f"{verb}(rot_qk, layers={fmt_layers(target.layers, sites)}, heads={target.heads or 'all'})")


def _stash(store: dict[str, torch.Tensor]) -> HookFn:
    def fn(x: torch.Tensor, hook: Any) -> None:
        store["pre"] = x

    return fn


def _requery(
    store: dict[str, torch.Tensor], rule: SharedRule, inv: torch.Tensor, scaling: float, mask: torch.Tensor,
    layout: str, heads: tuple[int, ...] | None, exempt_first: bool, advice: str,
) -> HookFn:
    plan, key = decode_plan(inv), tuple(inv.tolist())  # per layer, once (not on every forward)

    def fn(y: torch.Tensor, hook: Any) -> torch.Tensor:
        x = store["pre"]
        if x.shape != y.shape and x.ndim == 4 and x.transpose(1, 2).shape == y.shape:  # a [b, h, s, d] pre hook
            x = x.transpose(1, 2)
        elif x.shape != y.shape and x.shape[:2] == y.shape[:2] and x.numel() == y.numel():  # [b, s, h * d]
            x = x.reshape(y.shape)
        invd = inv.to(y.device)
        angles = pair_angles(x, y, invd.numel(), layout)
        t = decode_positions(angles, invd, tol=0.05, plan=plan).long()
        check_pair(x, y, t, invd, layout, angles, advice)
        # the model's own per-band rotation at the decoded positions (kept for unedited bands)
        ang = t[..., None].float() * invd
        c, s = mixed_bands(rule, t, invd, scaling, torch.cos(ang) * scaling, torch.sin(ang) * scaling, mask, exempt_first, key)
        new = rotate_bands(x.float(), c, s, layout).to(y.dtype)
        if heads is None:
            return new
        out = y.clone()
        idx = torch.as_tensor(heads, device=y.device)
        out[:, :, idx] = new[:, :, idx]
        return out

    return fn
