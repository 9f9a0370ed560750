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

from pe_hooks.core.errors import DataError
from pe_hooks.core.types import HookFn, Model
from pe_hooks.sites.inspect import rotary_frequencies
from pe_hooks.sites.scheme import PositionalScheme

#: positions are decoded (and checked) over 0..DECODE_LIMIT; beyond it a forward raises DataError
DECODE_LIMIT = 1 << 20


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Wrap angles to (-pi, pi]."""
    return angle - 2 * math.pi * torch.round(angle / (2 * math.pi))


def _refine(t: torch.Tensor, angles: torch.Tensor, order: list[int], freqs: list[float]) -> torch.Tensor:
    """Refine position estimates ``t`` band by band (each band resolves the error within +-pi/w)."""
    for k in order[1:]:
        w = freqs[k]
        if w > 0.5:  # higher ones add nothing at float32 precision
            break
        t = t + _wrap(angles[..., k] - t * w) / w
    return t


def residual(t: torch.Tensor, angles: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Largest ``|angle - t w|`` (wrapped) over the bands, per token: how far the angles are from
    those HF computes at integer positions ``t`` (``fl32(t * w)``, in float64 from there on)."""
    prod = (t.float()[..., None] * inv_freq.float()).double()
    return _wrap(angles.double() - prod).abs().amax(-1)


@dataclass(frozen=True)
class DecodePlan:
    """What ``decode_positions`` needs of one ``inv_freq``: constant per model, so built once
    (``decode_plan``) when hooks are made, not on every forward."""

    freqs: tuple[float, ...]  # inv_freq in float64
    order: tuple[int, ...]  # bands by rising frequency, zero frequencies left out
    period: float  # of the lowest frequency
    ks: tuple[int, ...]  # candidate periods tried: 0, -1, 1, 2, ... up to the limit


def decode_plan(inv_freq: torch.Tensor, limit: int = DECODE_LIMIT) -> DecodePlan:
    """The ``DecodePlan`` of ``inv_freq`` for positions ``0..limit``."""
    freqs = tuple(inv_freq.double().tolist())
    order = tuple(k for k in torch.argsort(inv_freq.cpu()).tolist() if freqs[k] > 0)  # lowest first (0: no rotation)
    period = 2 * math.pi / freqs[order[0]] if order else math.inf
    # k = -1 catches an angle just below 0 (e.g. -1e-7 at t = 0, which puts base near P)
    ks = (0, -1, *range(1, int(limit / period) + 1)) if math.isfinite(period) else (0,)
    return DecodePlan(freqs, order, period, ks)


def decode_positions(
    angles: torch.Tensor, inv_freq: torch.Tensor, limit: int = DECODE_LIMIT, tol: float = 1e-3,
    plan: DecodePlan | None = None,
) -> torch.Tensor:
    """Integer positions ``t`` (as floats) from rotation angles ``[..., half]`` (``t * inv_freq``
    wrapped to (-pi, pi]), exact over ``0..limit``.

    The lowest frequency ``w_min`` gives ``t`` modulo its period ``P = 2 pi / w_min`` (positions are
    >= 0, so the first candidate lies in ``[0, P)``); the higher frequencies refine each candidate
    ``t0 + k P`` (``k = 0, -1, 1, 2, ...`` while ``<= limit``) to an integer, and each token keeps the
    candidate whose angles ``t w`` reproduce its own (``residual``). Check the result with
    ``residual`` where the angles could be other than a rotary table's. ``tol``: a candidate this close
    (radians) is taken without trying the further ones (so a forward at true positions tries one).
    ``plan``: ``decode_plan(inv_freq, limit)``, built once where the same frequencies decode every forward.
    """
    plan = plan or decode_plan(inv_freq, limit)
    freqs, order = list(plan.freqs), list(plan.order)
    if not order:
        return torch.zeros(angles.shape[:-1], dtype=torch.float32, device=angles.device)
    a = angles.double()
    base = torch.remainder(a[..., order[0]], 2 * math.pi) / freqs[order[0]]
    best_t: torch.Tensor | None = None
    best_err: torch.Tensor | None = None
    for k in plan.ks:
        t = _refine(base + k * plan.period, a, order, freqs).round().clamp_min(0)
        err = residual(t, angles, inv_freq)
        if best_t is None or best_err is None:
            best_t, best_err = t, err
        else:
            better = err < best_err
            best_t, best_err = torch.where(better, t, best_t), torch.where(better, err, best_err)
        if bool((best_err <= tol).all()):
            break
    assert best_t is not None
    return best_t.to(angles.dtype if angles.is_floating_point() else torch.float32)


def undecodable(what: str, err: float, limit: int, hooks: str) -> DataError:
    """The error of angles (``what``: where they were read) that no integer position ``0..limit``
    reproduces: positions past the limit, fractional position ids, or an edit of ``hooks``."""
    return DataError(
        f"{what} of this forward do not match any integer positions 0..{limit} (angle error {err:.2g} rad): "
        f"pe-hooks decodes positions exactly up to {limit}; pass integer position_ids below that, and do not "
        f"edit {hooks} under pe-hooks' rotary hooks"
    )


def table_tolerance(dtype: torch.dtype) -> float:
    """Largest angle error (radians) a rotary table in ``dtype`` can carry at a true position."""
    return max(1e-4, 8 * float(torch.finfo(dtype).eps)) if dtype.is_floating_point else 1e-4


def angles_from_tables(cos: torch.Tensor, sin: torch.Tensor, half: int, interleaved: bool = False) -> torch.Tensor:
    """Per-band angles ``[..., half]`` of rotary tables (``interleaved``: each band's two columns
    are adjacent, ``repeat_interleave`` layout; else the band's first column is ``k``)."""
    c, s = (cos[..., 0 : 2 * half : 2], sin[..., 0 : 2 * half : 2]) if interleaved else (cos[..., :half], sin[..., :half])
    return torch.atan2(s.float(), c.float())


def candidate_freqs(model: Model, sites: PositionalScheme) -> list[tuple[torch.Tensor, float]]:
    seen: list[tuple[torch.Tensor, float]] = []
    for layer in range(sites.n_layers):
        inv, s = rotary_frequencies(model, layer)
        if not any(inv.shape == o.shape and torch.equal(inv, o) for o, _ in seen):
            seen.append((inv, s))
    return seen


@dataclass
class PositionTracker:
    """Hooks on the top-level ``rotary_emb.hook_cos/sin`` that record this forward's positions.

    The positions are decoded from the tables (``decode_positions``) and checked: the angles HF
    computes at the decoded positions must reproduce the tables to the table dtype's precision,
    else the forward stops with a ``DataError`` (positions beyond ``DECODE_LIMIT``, fractional
    position ids, or tables that are not ``s * cos(t w)`` of any layer's frequencies).
    """

    candidates: list[tuple[torch.Tensor, float]]
    interleaved: bool = False
    limit: int = DECODE_LIMIT
    positions: torch.Tensor | None = None
    _cos: torch.Tensor | None = field(default=None, repr=False)
    _plans: list[DecodePlan] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._plans = [decode_plan(inv, self.limit) for inv, _ in self.candidates]  # per model, not per forward

    def hooks(self, sites: PositionalScheme) -> list[tuple[str, HookFn]]:
        assert sites.rotary_cos is not None and sites.rotary_sin is not None

        def stash(cos: torch.Tensor, hook: Any) -> None:
            self._cos = cos

        def decode(sin: torch.Tensor, hook: Any) -> None:
            assert self._cos is not None, "rotary cos hook did not fire before sin"
            self.positions = self.decode(self._cos, sin)

        return [(sites.rotary_cos, stash), (sites.rotary_sin, decode)]

    def decode(self, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Integer positions ``[b, s]`` of tables ``cos``/``sin``, checked (see the class doc)."""
        best: tuple[float, torch.Tensor] | None = None
        for (inv, _), plan in zip(self.candidates, self._plans):  # Gemma-3: several bases; keep the one that fits
            inv = inv.to(sin.device)
            ang = angles_from_tables(cos, sin, inv.numel(), self.interleaved)
            t = decode_positions(ang, inv, self.limit, table_tolerance(sin.dtype), plan)
            err = float(residual(t, ang, inv).max()) if t.numel() else 0.0
            if best is None or err < best[0]:
                best = (err, t)
        assert best is not None
        if best[0] > table_tolerance(sin.dtype):
            raise undecodable("the rotary tables", best[0], self.limit, "rotary_emb.hook_cos/sin")
        return best[1].long()

    def get(self) -> torch.Tensor:
        if self.positions is None:
            raise RuntimeError("rotary positions were not decoded: the top-level rotary hooks did not fire")
        return self.positions
