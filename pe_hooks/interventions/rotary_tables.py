"""Rotary table math: the new per-token ``(cos, sin)`` of each rule, and the rotation itself.

HF's layout: ``cos = cat(cos(t w), cos(t w)) * s`` and ``sin = cat(sin(t w), sin(t w)) * s`` over the
first ``rotary_dim`` dims of each head, ``x_rot = x * cos + rotate_half(x) * s``. A ``TableRule``
says how each token's new angles follow from its real position (``zero``, ``remove``,
``replace``); ``new_tables`` applies it to the selected bands and tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.interventions.rotary_bands import band_mask
from pe_hooks.interventions.row_mean import own_prefix_mean


@dataclass(frozen=True)
class TableRule:
    """How the (cos, sin) of each token's new rotation are computed from its real position."""

    kind: Literal["zero", "remove", "replace"]
    positions: PositionMap | None = None
    reference: Sequence[int] | None = None
    keep: tuple[int, ...] | None = None  # replace: only these bands rotate (by f(t)); the rest get none

    def angles_cos_sin(self, t: torch.Tensor, inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token ``(cos, sin)`` of shape ``[b, s, half]`` (unit scale)."""
        if self.kind == "zero":
            shape = (*t.shape, inv.numel())
            return torch.ones(shape, device=t.device), torch.zeros(shape, device=t.device)
        if self.kind == "remove":
            if self.reference is None:  # each row's own positions 0..max t[b] (issue 23: not the batch's longest)
                ang = torch.arange(int(t.max()) + 1, device=t.device, dtype=torch.float32)[:, None] * inv[None, :]
                c = own_prefix_mean(torch.cos(ang), t).expand(*t.shape, -1)
                s = own_prefix_mean(torch.sin(ang), t).expand(*t.shape, -1)
                return c, s
            ref = torch.as_tensor(list(self.reference), dtype=torch.float32, device=t.device)
            ang = ref[:, None] * inv[None, :]
            c = torch.cos(ang).mean(0).expand(*t.shape, -1)
            s = torch.sin(ang).mean(0).expand(*t.shape, -1)
            return c, s
        assert self.positions is not None
        new_t = self.positions(t)
        if bool((new_t < 0).any()):
            raise SchemeError(f"{self.positions!r} produced negative positions; choose a map that stays >= 0")
        if self.keep is not None:  # a zero frequency is no rotation
            inv = inv * band_mask(self.keep, inv.numel()).to(inv.device)
        ang = new_t[..., None].float() * inv
        return torch.cos(ang), torch.sin(ang)


@dataclass(eq=False)
class SharedRule:
    """One rule shared by every hook of one ``HookList``: the rule's unit ``(cos, sin)`` for the
    positions of the current forward, computed once per set of frequencies and handed to the cos
    hook and the sin hook of every layer alike.

    So a position map runs once per forward (per distinct ``inv_freq``), never once per table: a
    map that is random or edits its input cannot give cos and sin different positions. The cache
    is keyed on the positions tensor itself (held here, so never confused with a later one) and
    on the frequencies.
    """

    rule: TableRule
    _t: torch.Tensor | None = field(default=None, repr=False)
    _angles: dict[tuple[float, ...], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    #: finished full-width tables (no band or token kept), shared across layers within one forward
    tables: dict[tuple[Any, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    def angles(self, t: torch.Tensor, inv: torch.Tensor, key: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rule's unit ``(cos, sin)`` ``[b, s, half]`` at positions ``t`` (a new ``t``: a new forward)."""
        if self._t is not t:
            self._t, self._angles, self.tables = t, {}, {}
        got = self._angles.get(key)
        if got is None or got[0].device != t.device:
            got = self.rule.angles_cos_sin(t, inv)
            self._angles[key] = got
        return got


def band_columns(table: torch.Tensor, half: int, tables: str = "halves") -> torch.Tensor:
    """One column per band ``[..., half]`` of a table laid out as ``tables`` (``"halves"``:
    ``cat(c, c)``, ``"repeated"``: ``repeat_interleave(c, 2)``, ``"single"``: ``c``)."""
    return table[..., 0 : 2 * half : 2] if tables == "repeated" else table[..., :half]


def assemble(bands: torch.Tensor, tables: str, width: int) -> torch.Tensor:
    """A full table of ``width`` columns from per-band values ``[..., half]`` (inverse of ``band_columns``)."""
    if tables == "single":
        return bands
    if tables == "repeated":
        return bands.repeat_interleave(2, dim=-1)[..., :width]
    return torch.cat([bands, bands], dim=-1)[..., :width]


def mixed_bands(
    rule: TableRule | SharedRule, t: torch.Tensor, inv: torch.Tensor, scaling: float,
    orig_c: torch.Tensor, orig_s: torch.Tensor, band_mask: torch.Tensor, exempt_first: bool,
    key: tuple[float, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band ``(cos, sin)`` ``[b, s, half]``: the rule's on the selected bands and tokens, the
    originals ``orig_c``/``orig_s`` (per band) elsewhere. ``key``: ``tuple(inv.tolist())``, the
    frequencies' key in a ``SharedRule`` (constant per layer: hooks compute it once, not per forward)."""
    if isinstance(rule, SharedRule):
        c, s = rule.angles(t, inv, key if key is not None else tuple(inv.tolist()))
    else:
        c, s = rule.angles_cos_sin(t, inv)
    c, s = c * scaling, s * scaling
    keep = ~band_mask.to(t.device)
    oc, os_ = orig_c.float(), orig_s.float()
    c = torch.where(keep, oc, c)
    s = torch.where(keep, os_, s)
    if exempt_first:
        first = (t == 0)[..., None]
        c = torch.where(first, oc, c)
        s = torch.where(first, os_, s)
    return c, s


def new_tables(
    rule: TableRule | SharedRule,
    t: torch.Tensor,
    inv: torch.Tensor,
    scaling: float,
    orig_cos: torch.Tensor,
    orig_sin: torch.Tensor,
    band_mask: torch.Tensor,
    exempt_first: bool,
    tables: str = "halves",
    key: tuple[float, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width ``(cos, sin)`` tables (laid out as ``tables``) with the rule applied to the
    selected bands/tokens (``key``: see ``mixed_bands``)."""
    half = inv.numel()
    oc, os_ = band_columns(orig_cos, half, tables), band_columns(orig_sin, half, tables)
    c, s = mixed_bands(rule, t, inv, scaling, oc, os_, band_mask, exempt_first, key)
    width = orig_cos.shape[-1]
    return assemble(c, tables, width).to(orig_cos.dtype), assemble(s, tables, width).to(orig_sin.dtype)


def pair_parts(x: torch.Tensor, half: int, pairs: str = "half") -> tuple[torch.Tensor, torch.Tensor]:
    """The two components ``(x1, x2)`` ``[..., half]`` of each rotated band of ``x``
    (``pairs="half"``: dims ``k`` and ``k + half``; ``"adjacent"``: dims ``2k`` and ``2k + 1``)."""
    if pairs == "adjacent":
        return x[..., 0 : 2 * half : 2], x[..., 1 : 2 * half : 2]
    return x[..., :half], x[..., half : 2 * half]


def rotate_bands(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, pairs: str = "half") -> torch.Tensor:
    """``x`` ``[b, s, h, d]`` with each band ``k`` of its first ``2 * half`` dims rotated by
    ``(c, s)[..., k]`` (``[b, s, half]``, broadcast over heads); the other dims pass through."""
    half = c.shape[-1]
    x1, x2 = pair_parts(x, half, pairs)
    cc, ss = c[:, :, None, :], s[:, :, None, :]
    y1, y2 = x1 * cc - x2 * ss, x2 * cc + x1 * ss
    rotated = torch.stack([y1, y2], dim=-1).flatten(-2) if pairs == "adjacent" else torch.cat([y1, y2], dim=-1)
    return torch.cat([rotated, x[..., 2 * half :]], dim=-1)
