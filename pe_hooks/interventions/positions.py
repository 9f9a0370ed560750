"""Position maps: what ``replace`` turns each original position into.

A ``PositionMap`` takes the integer positions a forward pass really uses (shape ``[batch, seq]``,
already correct under a KV cache and left padding) and returns new, possibly fractional,
positions of the same shape. The rotary and learned sites turn them into cos/sin tables or
W_pos rows; ALiBi turns them into biases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.validate import check_int, check_number


@dataclass(frozen=True)
class PositionMap:
    """A named function ``positions [batch, seq] (long) -> new positions [batch, seq] (float)``."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    integer: bool = True  # False when the output can be fractional (scale)

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        # each call gets its own copy: a map that edits its input in place (``q.add_(2)``) must not
        # change the positions pe-hooks keeps for the other table, the other layers or the next hook
        out = self.fn(positions.clone())
        if not isinstance(out, torch.Tensor):
            raise SchemeError(f"position map '{self.name}' returned {type(out).__name__}; it must return a tensor")
        if out.shape != positions.shape:
            raise SchemeError(
                f"position map '{self.name}' changed the shape {tuple(positions.shape)} -> {tuple(out.shape)}; "
                "it must return one new position per input position (a tensor of the same shape)"
            )
        if out.dtype == torch.bool or out.is_complex():
            raise SchemeError(
                f"position map '{self.name}' returned a {out.dtype} tensor; it must return real positions"
            )
        out = out.to(torch.float32)
        if not bool(torch.isfinite(out).all()):
            raise SchemeError(
                f"position map '{self.name}' returned NaN or inf positions; it must return finite positions"
            )
        if out.numel() and float(out.min()) < 0:
            raise SchemeError(
                f"position map '{self.name}' returned negative positions (min {float(out.min()):g}); positions start at 0: "
                "choose a map that stays >= 0"
            )
        return out

    def __repr__(self) -> str:
        return f"PositionMap({self.name})"


def constant(p: int = 0) -> PositionMap:
    """Every token gets position ``p``."""
    p = check_int(p, "constant(p)", minimum=0)
    return PositionMap(f"constant({p})", lambda pos: torch.full_like(pos, p, dtype=torch.float32))


def shift(k: int) -> PositionMap:
    """Position ``t`` becomes ``t + k`` (negative results are an error at use time)."""
    k = check_int(k, "shift(k)")
    return PositionMap(f"shift({k:+d})", lambda pos: pos.to(torch.float32) + k)


def scale(factor: float) -> PositionMap:
    """Position interpolation: ``t`` becomes ``t * factor`` (fractional; rotary only)."""
    factor = check_number(factor, "scale(factor)", positive=True)
    return PositionMap(f"scale({factor:g})", lambda pos: pos.to(torch.float32) * factor, integer=False)


def reverse(length: int) -> PositionMap:
    """Position ``t`` becomes ``length - 1 - t``. ``length`` is explicit so that incremental
    decoding (one new token per forward) maps consistently."""
    length = check_int(length, "reverse(length)", minimum=1)

    def fn(pos: torch.Tensor) -> torch.Tensor:
        if int(pos.max()) >= length:
            raise SchemeError(f"reverse(length={length}) got position {int(pos.max())}; pass a larger length")
        return (length - 1 - pos).to(torch.float32)

    return PositionMap(f"reverse({length})", fn)


def shuffle(n_positions: int, seed: int = 0) -> PositionMap:
    """A seeded permutation of ``0..n_positions-1`` applied to every sequence alike."""
    n_positions = check_int(n_positions, "shuffle(n_positions)", minimum=1)
    seed = check_int(seed, "shuffle(seed)")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_positions, generator=gen)

    def fn(pos: torch.Tensor) -> torch.Tensor:
        if int(pos.max()) >= n_positions:
            raise SchemeError(
                f"shuffle(n_positions={n_positions}) got position {int(pos.max())}; pass a larger n_positions"
            )
        return perm.to(pos.device)[pos.long()].to(torch.float32)

    return PositionMap(f"shuffle({n_positions}, seed={seed})", fn)


def table(new_positions: torch.Tensor) -> PositionMap:
    """A user lookup table: position ``t`` becomes ``new_positions[t]``."""
    try:
        raw = torch.as_tensor(new_positions)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SchemeError(
            f"a position table must hold real positions, got {type(new_positions).__name__} ({exc}); "
            "pass a 1-D tensor of numbers"
        ) from exc
    if raw.dtype == torch.bool or raw.is_complex():
        raise SchemeError(f"a position table must hold real positions, got a {raw.dtype} tensor; pass integer or float positions")
    tab = raw.detach().to(torch.float32, copy=True)  # the user's later edits of their tensor change nothing
    if tab.ndim != 1 or tab.numel() == 0:
        raise SchemeError(
            f"a position table must be a non-empty 1-D tensor (entry t = new position of t), got shape {tuple(tab.shape)}; "
            "pass e.g. torch.arange(n) edited"
        )
    if not bool(torch.isfinite(tab).all()) or bool((tab < 0).any()):
        raise SchemeError("a position table must hold finite, non-negative positions; replace NaN, inf and negative entries")

    def fn(pos: torch.Tensor) -> torch.Tensor:
        if int(pos.max()) >= tab.numel():
            raise SchemeError(
                f"position table has {tab.numel()} entries but position {int(pos.max())} occurred; "
                f"give a table with at least {int(pos.max()) + 1} entries (one per position in use)"
            )
        return tab.to(pos.device)[pos.long()]

    return PositionMap(f"table[{tab.numel()}]", fn, integer=bool(torch.all(tab == tab.round())))


def as_position_map(
    spec: PositionMap | int | torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
) -> PositionMap:
    """Coerce what a user passes to ``replace(positions=...)``: a map, an int (constant), a
    tensor (lookup table) or a callable on position tensors."""
    if isinstance(spec, PositionMap):
        return spec
    if isinstance(spec, bool):
        raise SchemeError("positions=True/False is ambiguous; pass a PositionMap such as shift(1)")
    if isinstance(spec, int):
        return constant(spec)
    if isinstance(spec, torch.Tensor):
        return table(spec)
    if callable(spec):
        return PositionMap(getattr(spec, "__name__", "custom"), spec, integer=False)
    raise SchemeError(
        f"cannot use {type(spec).__name__} as positions; pass a PositionMap, int, tensor or callable"
    )
