"""Rotary position decoding: the positions a forward really uses, read from its rotary tables.

Rotary embedding rotates each pair of query/key dimensions ``k`` by the angle ``t * w_k``
(``w_k = inv_freq[k]``). ``decode_positions`` inverts the angles (lowest frequency first, refined
by the higher ones); ``PositionTracker`` hooks the top-level ``rotary_emb.hook_cos/sin`` of a
TransformerBridge and records each forward's positions, so KV-cache decoding, ``generate()`` and
explicit ``position_ids`` are handled with no assumption that positions are ``arange``. Both the
rotary interventions and ``pe_hooks.sites.positions`` build on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from pe_hooks.core.types import HookFn, Model
from pe_hooks.sites.inspect import rotary_frequencies
from pe_hooks.sites.scheme import PositionalScheme


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Wrap angles to (-pi, pi]."""
    return angle - 2 * math.pi * torch.round(angle / (2 * math.pi))


def decode_positions(angles: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Positions ``t`` from rotation angles ``[..., half]`` (``t * inv_freq`` wrapped to (-pi, pi]).

    Start from the lowest frequency (no wrap for ``t * w_min < pi``) and refine with higher
    frequencies, each of which resolves the remaining error more finely. Returns float positions
    (round them for integer inputs).
    """
    # the frequencies as Python floats, read once (one device sync, not one per band); exact, since a
    # Python float holds a float32 value exactly and torch multiplies by it in the tensor's dtype
    order = torch.argsort(inv_freq).tolist()  # lowest frequency first
    freqs = inv_freq.tolist()
    t = angles[..., order[0]] / freqs[order[0]]
    for k in order[1:]:
        w = freqs[k]
        if w > 0.5:  # higher ones add nothing at float32 precision
            break
        t = t + _wrap(angles[..., k] - t * w) / w
    return t


def angles_from_tables(cos: torch.Tensor, sin: torch.Tensor, half: int) -> torch.Tensor:
    return torch.atan2(sin[..., :half].float(), cos[..., :half].float())


def candidate_freqs(model: Model, scheme: PositionalScheme) -> list[tuple[torch.Tensor, float]]:
    seen: list[tuple[torch.Tensor, float]] = []
    for layer in range(scheme.n_layers):
        inv, s = rotary_frequencies(model, layer)
        if not any(inv.shape == o.shape and torch.equal(inv, o) for o, _ in seen):
            seen.append((inv, s))
    return seen


@dataclass
class PositionTracker:
    """Hooks on the top-level ``rotary_emb.hook_cos/sin`` that record this forward's positions."""

    candidates: list[tuple[torch.Tensor, float]]
    positions: torch.Tensor | None = None
    _cos: torch.Tensor | None = field(default=None, repr=False)

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
                t = decode_positions(angles_from_tables(self._cos, sin, half), inv).round()
                err = float((torch.sin(t[..., None] * inv) - sin[..., :half].float() / _scale(self._cos, sin, half)).abs().max())
                if best is None or err < best[0]:
                    best = (err, t)
            assert best is not None
            self.positions = best[1].long()

        return [(scheme.rotary_cos, stash), (scheme.rotary_sin, decode)]

    def get(self) -> torch.Tensor:
        if self.positions is None:
            raise RuntimeError("rotary positions were not decoded: the top-level rotary hooks did not fire")
        return self.positions


def _scale(cos: torch.Tensor, sin: torch.Tensor, half: int) -> torch.Tensor:
    return torch.sqrt(cos[..., :half].float() ** 2 + sin[..., :half].float() ** 2).clamp_min(1e-12)
