"""Rotary position interventions (Llama, SmolLM2, GPT-NeoX, Gemma; TL 3.x rotary models).

Rotary embedding rotates each pair of query/key dimensions ``k`` by the angle ``t * w_k`` of the
token's position ``t`` (``w_k = inv_freq[k]``). In HF's layout the per-token tables are
``cos = cat(cos(t w), cos(t w)) * s`` and ``sin = cat(sin(t w), sin(t w)) * s`` over the first
``rotary_dim`` dims of each head (``s`` = ``attention_scaling``, 1 for plain RoPE), and
``x_rot = x * cos + rotate_half(x) * sin``.

Two sites:

``"rotary"`` (TransformerBridge, default): rewrites the per-layer tables at
``blocks.i.attn.hook_cos`` / ``hook_sin``. The positions a forward really uses are *decoded* from the
top-level ``rotary_emb.hook_cos/sin`` tables that fire before any layer (atan2 at the lowest
frequency, refined column by column; exact for float32 tables), so KV-cache decoding, ``generate()``
and explicit ``position_ids`` are handled with no assumption that positions are ``arange``.

``"rot_qk"``: rewrites the post-rotation ``attn.hook_rot_q/k`` from the pre-rotation ``attn.hook_q/k``
for chosen heads (per-head edits; the only rotary site on TL 3.x ``HookedTransformer``). Positions
are decoded from the angle between each pre- and post-rotation pair.

Verbs:

- ``zero``: no rotation (angle 0: ``cos = s``, ``sin = 0``), as if ``inv_freq`` were 0.
- ``remove`` (mean-ablation): every token gets the *average* rotation over reference positions
  ``P``: ``cos -> mean_{t in P} cos(t w)``, ``sin -> mean_{t in P} sin(t w)``. Default ``P`` is
  ``0..max t`` of the current forward, which on a KV-cache step is only the positions decoded so
  far; pass ``reference=range(N)`` when generating so that every step uses the same table (then
  cached decoding equals a full forward). This differs from ``zero``: the mean of unit vectors
  ``|mean_t e^{i t w}| = |sin(N w / 2) / (N sin(w / 2))|`` is ~0 for high-frequency bands, whose
  angles wrap many times over ``P`` (those bands of q and k are *damped*, i.e. scaled towards 0),
  and ~1 for low-frequency bands with ``N w << 2 pi``, which keep their mean angle at full
  magnitude. Every token gets the *same* transform ``m_k R(phi_k)`` per band ``k`` (``m_k`` the
  magnitude above), so band ``k`` adds ``m_k^2 (q_k . k_k)`` to the attention score: like ``zero``
  there is no relative position left, but each band's contribution is scaled by ``m_k^2``.
  (A constant position ``c`` for every token is exactly ``zero``: RoPE scores depend only on
  ``t_q - t_k``, and ``R(c w)^T R(c w) = I``.)
- ``replace(positions=f)``: the angle of ``f(t)`` (fractional positions allowed, e.g. ``scale``).
  ``keep_bands=``: only these bands rotate (by ``f(t)``), the rest get no rotation
  (``replace(model, shift(0), keep_bands=frequency_bands(model, "low", 8))`` keeps only the 8
  lowest frequencies of the model's own rotation).
- ``bands=``: act on these frequency bands only (indices into ``inv_freq``, 0 = the highest
  frequency); the other bands keep the model's own rotation. ``frequency_bands(model, "low", n)``
  picks the ``n`` lowest (or highest) bands. ``zero(model, bands=frequency_bands(model, "high", 8))``
  lets only the low frequencies keep their rotation.
- ``exempt_first``: tokens at position 0 keep their own rotation.

Real positions, padding and caching. The hooks act on whatever positions the forward really uses,
decoded from its tables, never on ``arange(seq)``. On a TransformerLens 4 bridge,
``model(tokens, attention_mask=mask)`` derives HF ``position_ids`` from the mask for left-padded
rows (``cumsum(mask) - 1``, as HF ``generate`` does), and an explicit
``position_ids=pe_hooks.data.positions_from_mask(mask)`` is forwarded unchanged; either way a
left-padded token gets its real position, and a map like ``shuffle`` sees it. (Without a mask, pad
tokens count as positions, exactly as in HF's plain forward.) ``generate(..., use_past_kv_cache=True)``
feeds each new token with its absolute position, so each step gets the intervened rotation of
that position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from pe_hooks.errors import SchemeError
from pe_hooks.interventions.base import Target, not_supported, register_site
from pe_hooks.interventions.hooklist import HookList
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.sites import PositionalScheme, Scheme, rotary_frequencies
from pe_hooks.types import HookFn, Model

Bands = Sequence[int] | torch.Tensor | None

# --------------------------------------------------------------------------------------------
# position decoding


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Wrap angles to (-pi, pi]."""
    return angle - 2 * math.pi * torch.round(angle / (2 * math.pi))


def decode_positions(angles: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Positions ``t`` from rotation angles ``[..., half]`` (``t * inv_freq`` wrapped to (-pi, pi]).

    Start from the lowest frequency (no wrap for ``t * w_min < pi``) and refine with higher
    frequencies, each of which resolves the remaining error more finely. Returns float positions
    (round them for integer inputs).
    """
    order = torch.argsort(inv_freq)  # lowest frequency first
    w0 = inv_freq[order[0]]
    t = angles[..., order[0]] / w0
    for k in order[1:]:
        w = inv_freq[k]
        if float(w) > 0.5:  # higher ones add nothing at float32 precision
            break
        t = t + _wrap(angles[..., k] - t * w) / w
    return t


def _angles_from_tables(cos: torch.Tensor, sin: torch.Tensor, half: int) -> torch.Tensor:
    return torch.atan2(sin[..., :half].float(), cos[..., :half].float())


def _candidate_freqs(model: Model, scheme: PositionalScheme) -> list[tuple[torch.Tensor, float]]:
    seen: list[tuple[torch.Tensor, float]] = []
    for layer in range(scheme.n_layers):
        inv, s = rotary_frequencies(model, layer)
        if not any(inv.shape == o.shape and torch.equal(inv, o) for o, _ in seen):
            seen.append((inv, s))
    return seen


@dataclass
class _PositionTracker:
    """Hooks on the top-level ``rotary_emb.hook_cos/sin`` that record this forward's positions."""

    candidates: list[tuple[torch.Tensor, float]]
    positions: torch.Tensor | None = None
    _cos: torch.Tensor | None = field(default=None, repr=False)
    # tables computed in this forward, shared by every layer with the same frequencies and rule
    tables: dict[tuple[Any, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    def hooks(self, scheme: PositionalScheme) -> list[tuple[str, HookFn]]:
        assert scheme.rotary_cos is not None and scheme.rotary_sin is not None

        def stash(cos: torch.Tensor, hook: Any) -> None:
            self._cos = cos

        def decode(sin: torch.Tensor, hook: Any) -> None:
            assert self._cos is not None, "rotary cos hook did not fire before sin"
            best: tuple[float, torch.Tensor] | None = None
            for inv, _ in self.candidates:  # Gemma-3: several bases; keep the one that fits
                inv = inv.to(sin.device)
                half = inv.numel()
                t = decode_positions(_angles_from_tables(self._cos, sin, half), inv).round()
                err = float((torch.sin(t[..., None] * inv) - sin[..., :half].float() / _scale(self._cos, sin, half)).abs().max())
                if best is None or err < best[0]:
                    best = (err, t)
            assert best is not None
            self.positions = best[1].long()
            self.tables.clear()

        return [(scheme.rotary_cos, stash), (scheme.rotary_sin, decode)]

    def get(self) -> torch.Tensor:
        if self.positions is None:
            raise RuntimeError("rotary positions were not decoded: the top-level rotary hooks did not fire")
        return self.positions


def _scale(cos: torch.Tensor, sin: torch.Tensor, half: int) -> torch.Tensor:
    return torch.sqrt(cos[..., :half].float() ** 2 + sin[..., :half].float() ** 2).clamp_min(1e-12)


# --------------------------------------------------------------------------------------------
# target tables


def frequency_bands(model: Model, which: Literal["low", "high"] = "low", n: int = 8, layer: int = 0) -> list[int]:
    """Indices of the ``n`` lowest- or highest-frequency rotary bands (for ``bands=``)."""
    inv, _ = rotary_frequencies(model, layer)
    if not 0 < n <= inv.numel():
        raise SchemeError(f"n must be in 1..{inv.numel()} (the model has {inv.numel()} rotary bands)")
    order = torch.argsort(inv, descending=(which == "high")).tolist()
    return sorted(order[:n])


def _band_mask(bands: Bands, half: int) -> torch.Tensor:
    if bands is None:
        return torch.ones(half, dtype=torch.bool)
    b = torch.as_tensor(bands)
    if b.dtype == torch.bool:
        if b.numel() != half:
            raise SchemeError(f"a boolean band mask needs {half} entries, got {b.numel()}")
        return b
    idx = b.long().flatten()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= half):
        raise SchemeError(f"band indices must be in 0..{half - 1} (the model has {half} rotary bands)")
    mask = torch.zeros(half, dtype=torch.bool)
    mask[idx] = True
    return mask


@dataclass(frozen=True)
class _TableRule:
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
            ref = (
                torch.arange(int(t.max()) + 1, device=t.device, dtype=torch.float32)
                if self.reference is None
                else torch.as_tensor(list(self.reference), dtype=torch.float32, device=t.device)
            )
            ang = ref[:, None] * inv[None, :]
            c = torch.cos(ang).mean(0).expand(*t.shape, -1)
            s = torch.sin(ang).mean(0).expand(*t.shape, -1)
            return c, s
        assert self.positions is not None
        new_t = self.positions(t)
        if bool((new_t < 0).any()):
            raise SchemeError(f"{self.positions!r} produced negative positions; choose a map that stays >= 0")
        if self.keep is not None:  # a zero frequency is no rotation
            inv = inv * _band_mask(self.keep, inv.numel()).to(inv.device)
        ang = new_t[..., None].float() * inv
        return torch.cos(ang), torch.sin(ang)


def _new_tables(
    rule: _TableRule,
    t: torch.Tensor,
    inv: torch.Tensor,
    scaling: float,
    orig_cos: torch.Tensor,
    orig_sin: torch.Tensor,
    band_mask: torch.Tensor,
    exempt_first: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width ``(cos, sin)`` tables with the rule applied to the selected bands/tokens."""
    half = inv.numel()
    c, s = rule.angles_cos_sin(t, inv)
    c, s = c * scaling, s * scaling
    keep = ~band_mask.to(t.device)
    oc, os_ = orig_cos[..., :half].float(), orig_sin[..., :half].float()
    c = torch.where(keep, oc, c)
    s = torch.where(keep, os_, s)
    if exempt_first:
        first = (t == 0)[..., None]
        c = torch.where(first, oc, c)
        s = torch.where(first, os_, s)
    rot = orig_cos.shape[-1]
    c_full = torch.cat([c, c], dim=-1)[..., :rot].to(orig_cos.dtype)
    s_full = torch.cat([s, s], dim=-1)[..., :rot].to(orig_sin.dtype)
    return c_full, s_full


# --------------------------------------------------------------------------------------------
# site "rotary": per-layer cos/sin tables


def _require_rotary(scheme: PositionalScheme, site: str, verb: str) -> None:
    if scheme.scheme is not Scheme.ROTARY:
        alt = {
            Scheme.LEARNED: "Use site='pos_embed' (learned absolute positions).",
            Scheme.ALIBI: "Use site='alibi' (ALiBi biases in the attention scores).",
        }.get(scheme.scheme, "Use a residual-stream eraser: pe_hooks.fit_eraser(model, data).")
        raise not_supported(site, verb, scheme, alt)


class _RotaryVerbs:
    """The verbs shared by both rotary sites; subclasses implement ``_build``."""

    name: ClassVar[str]

    def _build(
        self, model: Model, scheme: PositionalScheme, target: Target, rule: _TableRule, bands: Bands, verb: str
    ) -> HookList:
        raise NotImplementedError

    def zero(self, model: Model, scheme: PositionalScheme, target: Target, *, bands: Bands = None, **kw: Any) -> HookList:
        _no_extra(kw, "zero")
        return self._build(model, scheme, target, _TableRule("zero"), bands, "zero")

    def remove(
        self, model: Model, scheme: PositionalScheme, target: Target, *, bands: Bands = None,
        reference: Sequence[int] | None = None, **kw: Any,
    ) -> HookList:
        _no_extra(kw, "remove")
        return self._build(model, scheme, target, _TableRule("remove", reference=reference), bands, "remove")

    def replace(
        self, model: Model, scheme: PositionalScheme, target: Target, positions: PositionMap,
        *, bands: Bands = None, keep_bands: Bands = None, **kw: Any,
    ) -> HookList:
        _no_extra(kw, "replace")
        keep: tuple[int, ...] | None = None
        if keep_bands is not None:
            if bands is not None:
                raise SchemeError(
                    "give bands= (edit these bands, the rest keep the model's rotation) or keep_bands= "
                    "(only these bands rotate, by the new positions; the rest get none), not both"
                )
            _require_rotary(scheme, self.name, "replace")
            half = rotary_frequencies(model, target.layers[0])[0].numel()
            keep = tuple(int(i) for i in _band_mask(keep_bands, half).nonzero().flatten())
        rule = _TableRule("replace", positions=positions, keep=keep)
        hooks = self._build(model, scheme, target, rule, bands, "replace")
        hooks.label = hooks.label.replace(", layers=", f", {positions.name}, layers=", 1)
        return hooks

    def project_out(
        self, model: Model, scheme: PositionalScheme, target: Target, basis: torch.Tensor | None, **kw: Any
    ) -> HookList:
        _require_rotary(scheme, self.name, "project_out")
        raise not_supported(
            self.name, "project_out", scheme,
            "Rotary position is a rotation, not an added vector: use zero/remove/replace here, or "
            "project out a fitted residual subspace with site='resid_pre' or pe_hooks.fit_eraser(model, data).",
        )



class RotaryTables(_RotaryVerbs):
    """Site ``"rotary"``: rewrite ``blocks.i.attn.hook_cos/sin`` (TransformerBridge)."""

    name: ClassVar[str] = "rotary"
    description: ClassVar[str] = "per-layer rotary cos/sin tables (blocks.i.attn.hook_cos/sin)"

    def _build(
        self, model: Model, scheme: PositionalScheme, target: Target, rule: _TableRule, bands: Bands, verb: str
    ) -> HookList:
        _require_rotary(scheme, self.name, verb)
        if not scheme.layer_cos or scheme.rotary_cos is None:
            raise not_supported(
                self.name, verb, scheme,
                "This model has no cos/sin hooks (TransformerLens 3.x): use site='rot_qk'.",
            )
        if target.heads is not None:
            raise SchemeError(
                "cos/sin tables are shared by all heads of a layer; for per-head edits use site='rot_qk'"
                + ("" if scheme.rot_q else " (not available on this model: its hook_rot_q/k never fire)")
            )
        tracker = _PositionTracker(_candidate_freqs(model, scheme))
        pairs: list[tuple[str, HookFn]] = list(tracker.hooks(scheme))
        for layer in target.layers:
            inv, scaling = rotary_frequencies(model, layer)
            mask = _band_mask(bands, inv.numel())
            for which, name in ((0, scheme.layer_cos[layer]), (1, scheme.layer_sin[layer])):
                pairs.append((name, _table_hook(which, tracker, rule, inv, scaling, mask, target.exempt_first)))
        label = f"{verb}(rotary, layers={_fmt_layers(target.layers, scheme)})"
        return HookList(pairs, label=label)

def _table_hook(
    which: int, tracker: _PositionTracker, rule: _TableRule, inv: torch.Tensor, scaling: float,
    mask: torch.Tensor, exempt_first: bool,
) -> HookFn:
    """Hook returning the new cos (``which=0``) or sin (``which=1``) table of one layer.

    Each table only needs its own original values (kept for unedited bands and exempt tokens).
    """

    # when no band or token keeps its original value, the new table depends only on the positions,
    # the frequencies and the rule: compute it once per forward and share it across layers
    shareable = bool(mask.all()) and not exempt_first
    key = (which, id(rule), tuple(inv.tolist()), scaling)

    def fn(table: torch.Tensor, hook: Any) -> torch.Tensor:
        if shareable and key in tracker.tables:
            cached = tracker.tables[key]
            if cached.shape == table.shape and cached.dtype == table.dtype and cached.device == table.device:
                return cached
        t = tracker.get().to(table.device)
        # the same table stands in for both originals: only the ``which`` output is used
        new = _new_tables(rule, t, inv.to(table.device), scaling, table, table, mask, exempt_first)[which]
        if shareable:
            tracker.tables[key] = new
        return new

    return fn


# --------------------------------------------------------------------------------------------
# site "rot_qk": per-head rotation of q and k


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def _apply_rotation(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rot_dim: int) -> torch.Tensor:
    """HF ``x * cos + rotate_half(x) * sin`` on the first ``rot_dim`` dims; ``cos``/``sin`` are
    ``[b, s, rot_dim]`` and broadcast over heads (``x`` is ``[b, s, h, d]``)."""
    xr, xp = x[..., :rot_dim], x[..., rot_dim:]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out = xr * c + _rotate_half(xr) * s
    return torch.cat([out, xp], dim=-1)


def _decode_from_pair(x: torch.Tensor, y: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Positions from pre-rotation ``x`` and post-rotation ``y`` (``[b, s, h, d]``, rotate_half)."""
    half = inv.numel()
    x1, x2 = x[..., :half].float(), x[..., half : 2 * half].float()
    y1, y2 = y[..., :half].float(), y[..., half : 2 * half].float()
    cross = (x1 * y2 - x2 * y1).sum(dim=2)  # sum over heads: robust to small components
    dot = (x1 * y1 + x2 * y2).sum(dim=2)
    return decode_positions(torch.atan2(cross, dot), inv.to(x.device)).round()


class RotaryQK(_RotaryVerbs):
    """Site ``"rot_qk"``: re-rotate q/k per head at ``attn.hook_rot_q/k`` from ``attn.hook_q/k``."""

    name: ClassVar[str] = "rot_qk"
    description: ClassVar[str] = "post-rotation queries/keys (blocks.i.attn.hook_rot_q/k), per head"

    def _kv_heads(self, scheme: PositionalScheme, heads: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if heads is None:
            return None
        group = scheme.n_heads // scheme.n_kv_heads
        if group == 1:
            return heads
        groups = {h // group for h in heads}
        whole = {g for g in groups if all(g * group + i in heads for i in range(group))}
        if whole != groups:
            listing = ", ".join(f"{list(range(g * group, (g + 1) * group))}" for g in range(scheme.n_kv_heads))
            raise SchemeError(
                f"{scheme.model_name} shares each key head among {group} query heads (GQA); a per-head "
                f"rotary edit must cover whole groups: {listing}"
            )
        return tuple(sorted(groups))

    def _build(self, model: Model, scheme: PositionalScheme, target: Target, rule: _TableRule, bands: Bands, verb: str) -> HookList:
        _require_rotary(scheme, self.name, verb)
        if not scheme.rot_q:
            raise not_supported(
                self.name, verb, scheme,
                "attn.hook_rot_q/k never fire on this architecture (GPT-NeoX bridge): use site='rotary'.",
            )
        kv_heads = self._kv_heads(scheme, target.heads)
        pairs: list[tuple[str, HookFn]] = []
        for layer in target.layers:
            inv, scaling = rotary_frequencies(model, layer)
            mask = _band_mask(bands, inv.numel())
            rot_dim = 2 * inv.numel()
            for which, heads in (("q", target.heads), ("k", kv_heads)):
                store: dict[str, torch.Tensor] = {}
                pre = f"blocks.{layer}.attn.hook_{which}"
                post = (scheme.rot_q if which == "q" else scheme.rot_k)[layer]
                if pre not in model.hook_dict:
                    raise not_supported(self.name, verb, scheme, f"the pre-rotation hook {pre} does not exist here; use site='rotary'.")
                pairs.append((pre, _stash(store)))
                pairs.append((post, _requery(store, rule, inv, scaling, mask, rot_dim, heads, target.exempt_first)))
        return HookList(pairs, label=f"{verb}(rot_qk, layers={_fmt_layers(target.layers, scheme)}, heads={target.heads or 'all'})")

def _stash(store: dict[str, torch.Tensor]) -> HookFn:
    def fn(x: torch.Tensor, hook: Any) -> None:
        store["pre"] = x

    return fn


def _requery(
    store: dict[str, torch.Tensor], rule: _TableRule, inv: torch.Tensor, scaling: float, mask: torch.Tensor,
    rot_dim: int, heads: tuple[int, ...] | None, exempt_first: bool,
) -> HookFn:
    def fn(y: torch.Tensor, hook: Any) -> torch.Tensor:
        x = store["pre"]
        invd = inv.to(y.device)
        t = _decode_from_pair(x, y, invd).long()
        # the model's own tables, rebuilt from the decoded positions (needed for unedited bands)
        ang = t[..., None].float() * invd
        oc = torch.cat([torch.cos(ang), torch.cos(ang)], -1) * scaling
        os_ = torch.cat([torch.sin(ang), torch.sin(ang)], -1) * scaling
        c, s = _new_tables(rule, t, invd, scaling, oc, os_, mask, exempt_first)
        new = _apply_rotation(x.float(), c.float(), s.float(), rot_dim).to(y.dtype)
        if heads is None:
            return new
        out = y.clone()
        idx = torch.as_tensor(heads, device=y.device)
        out[:, :, idx] = new[:, :, idx]
        return out

    return fn


# --------------------------------------------------------------------------------------------


def _fmt_layers(layers: tuple[int, ...], scheme: PositionalScheme) -> str:
    return "all" if len(layers) == scheme.n_layers else ",".join(map(str, layers))


def _no_extra(kw: dict[str, Any], verb: str) -> None:
    if kw:
        raise TypeError(f"unexpected options for rotary {verb}: {', '.join(kw)}")


register_site(RotaryTables())
register_site(RotaryQK())
