"""Site ``"rotary"``: rotary position interventions (Llama, SmolLM2, GPT-NeoX, Gemma; TL 3.x rotary models).

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
  ``0..max t[b]`` of each row ``b`` of the current forward (a left-padded row averages its own
  positions, as it would alone), which on a KV-cache step is only the positions decoded so
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

from typing import Any, ClassVar

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.interventions.base import Bands, SiteOptions, Target, fmt_layers, not_supported
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.interventions.rotary_bands import band_mask
from pe_hooks.interventions.rotary_tables import SharedRule, TableRule, new_tables
from pe_hooks.sites.inspect import rotary_frequencies
from pe_hooks.sites.registry import Scheme, per_head_advice
from pe_hooks.sites.rotary_positions import PositionTracker, candidate_freqs
from pe_hooks.sites.scheme import PositionalScheme


def require_rotary(sites: PositionalScheme, site: str, verb: str) -> None:
    if sites.scheme is not Scheme.ROTARY:
        raise not_supported(site, verb, sites)


def rotating(sites: PositionalScheme, target: Target, site: str, verb: str) -> list[int]:
    """The target layers whose q/k rotate (NoPE layers are left alone); an error if none does."""
    layers = [i for i in target.layers if i in sites.rotary_layers]
    if not layers:
        raise not_supported(
            site, verb, sites,
            f"layers {list(target.layers)} do not rotate (NoPE); the rotating layers are {list(sites.rotary_layers)}.",
        )
    return layers


class RotaryVerbs:
    """The verbs shared by both rotary sites; subclasses implement ``_build``."""

    name: ClassVar[str]
    accepts: ClassVar[dict[str, tuple[str, ...]]] = {
        "zero": ("bands",),
        "remove": ("bands", "reference"),
        "replace": ("bands", "keep_bands"),
        "project_out": (),
    }

    def _build(
        self, model: Model, sites: PositionalScheme, target: Target, rule: TableRule, bands: Bands, verb: str
    ) -> HookList:
        raise NotImplementedError

    def zero(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        return self._build(model, sites, target, TableRule("zero"), options.bands, "zero")

    def remove(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        rule = TableRule("remove", reference=options.reference)
        return self._build(model, sites, target, rule, options.bands, "remove")

    def replace(
        self, model: Model, sites: PositionalScheme, target: Target, positions: PositionMap, options: SiteOptions
    ) -> HookList:
        keep: tuple[int, ...] | None = None
        if options.keep_bands is not None:
            if options.bands is not None:
                raise SchemeError(
                    "give bands= (edit these bands, the rest keep the model's rotation) or keep_bands= "
                    "(only these bands rotate, by the new positions; the rest get none), not both"
                )
            require_rotary(sites, self.name, "replace")
            half = rotary_frequencies(model, target.layers[0])[0].numel()
            keep = tuple(int(i) for i in band_mask(options.keep_bands, half).nonzero().flatten())
        rule = TableRule("replace", positions=positions, keep=keep)
        hooks = self._build(model, sites, target, rule, options.bands, "replace")
        hooks.label = hooks.label.replace(", layers=", f", {positions.name}, layers=", 1)
        return hooks

    def project_out(
        self, model: Model, sites: PositionalScheme, target: Target, basis: torch.Tensor | None, k: int | None
    ) -> HookList:
        require_rotary(sites, self.name, "project_out")
        raise not_supported(
            self.name, "project_out", sites,
            "Rotary position is a rotation, not an added vector: use zero/remove/replace here, or "
            "project out a fitted residual subspace with site='resid_pre' or pe_hooks.fit_eraser(model, data).",
        )


class RotaryTables(RotaryVerbs):
    """Site ``"rotary"``: rewrite ``blocks.i.attn.hook_cos/sin`` (TransformerBridge)."""

    name: ClassVar[str] = "rotary"
    description: ClassVar[str] = "per-layer rotary cos/sin tables (blocks.i.attn.hook_cos/sin)"

    def _build(
        self, model: Model, sites: PositionalScheme, target: Target, rule: TableRule, bands: Bands, verb: str
    ) -> HookList:
        require_rotary(sites, self.name, verb)
        if not sites.layer_cos or sites.rotary_cos is None:
            raise not_supported(self.name, verb, sites)
        if target.heads is not None:
            raise SchemeError(
                "cos/sin tables are shared by all heads of a layer; " + per_head_advice(self.name, sites.family)
            )
        tables = sites.rotary_layout.tables if sites.rotary_layout else "halves"
        tracker = PositionTracker(candidate_freqs(model, sites), interleaved=tables == "repeated")
        pairs: list[tuple[str, HookFn]] = list(tracker.hooks(sites))
        shared = SharedRule(rule)  # one map call per forward, for every table of every layer
        for layer in rotating(sites, target, self.name, verb):
            inv, scaling = rotary_frequencies(model, layer)
            mask = band_mask(bands, inv.numel())
            for which, name in ((0, sites.layer_cos[layer]), (1, sites.layer_sin[layer])):
                pairs.append((name, _table_hook(which, tracker, shared, inv, scaling, mask, target.exempt_first, tables)))
        label = f"{verb}(rotary, layers={fmt_layers(target.layers, sites)})"
        return HookList(pairs, label=label)


def _table_hook(
    which: int, tracker: PositionTracker, shared: SharedRule, inv: torch.Tensor, scaling: float,
    mask: torch.Tensor, exempt_first: bool, tables: str,
) -> HookFn:
    """Hook returning the new cos (``which=0``) or sin (``which=1``) table of one layer.

    Each table only needs its own original values (kept for unedited bands and exempt tokens).
    """

    # when no band or token keeps its original value, the new table depends only on the positions,
    # the frequencies and the rule: compute it once per forward and share it across layers
    shareable = bool(mask.all()) and not exempt_first
    freq_key = tuple(inv.tolist())  # per layer, once (not on every forward)
    key = (which, freq_key, scaling)

    def fn(table: torch.Tensor, hook: Any) -> torch.Tensor:
        t = tracker.get()
        if shareable and shared._t is t and key in shared.tables:
            cached = shared.tables[key]
            if cached.shape == table.shape and cached.dtype == table.dtype and cached.device == table.device:
                return cached
        # the same table stands in for both originals: only the ``which`` output is used
        new = new_tables(shared, t, inv.to(table.device), scaling, table, table, mask, exempt_first, tables, freq_key)[which]
        if shareable:
            shared.tables[key] = new
        return new

    return fn
