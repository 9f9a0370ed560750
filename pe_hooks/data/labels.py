"""Positions as labels, one copy of each primitive: equal-width position bins, positions shuffled
within each sequence (the shuffled-label control), and the check of given token positions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pe_hooks.core.errors import DataError, NegativePositionError


def position_bins(t: torch.Tensor, n_bins: int, lo: int, hi: int) -> torch.Tensor:
    """The equal-width bin ``floor((t - lo) * n_bins / (hi - lo + 1))`` of integer positions
    ``lo..hi`` (clamped to ``0..n_bins - 1`` outside them)."""
    return ((t.long() - lo) * n_bins // (hi - lo + 1)).clamp(0, n_bins - 1)


def sequence_permutation(n: int, seq_index: int, seed: int) -> torch.Tensor:
    """The shuffled-label control's permutation of a sequence's ``n`` tokens: the same for a
    sequence index and seed wherever it is drawn (the moments and the sample of a sweep agree)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(seq_index)))


def shuffle_within_sequences(
    pos: torch.Tensor, keep: torch.Tensor, seq_index: torch.Tensor, seed: int
) -> torch.Tensor:
    """Rows of ``pos`` ``[batch, seq]`` with the ``keep`` entries of each row permuted among
    themselves (``sequence_permutation`` of the row's sequence index)."""
    out = pos.clone()
    for r in range(pos.shape[0]):
        idx = torch.nonzero(keep[r]).squeeze(-1)
        out[r, idx] = pos[r, idx[sequence_permutation(len(idx), int(seq_index[r]), seed)]]
    return out


def shuffle_within_groups(labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat ``labels`` permuted within each group (sequence id), by ``sequence_permutation`` of the
    group's id (its rank among the ids if they are not integers): every sequence keeps its own
    labels, only the link between a token and its label is broken."""
    g = np.asarray(groups)
    ids = g if np.issubdtype(g.dtype, np.integer) else np.unique(g, return_inverse=True)[1]
    out = np.array(labels, copy=True)
    for key in np.unique(ids):
        idx = np.flatnonzero(ids == key)
        out[idx] = labels[idx[sequence_permutation(len(idx), int(key), seed).numpy()]]
    return out


def check_token_positions(
    positions: Any, shape: tuple[int, ...] | None = None, *, upper: int | None = None,
    fix: str = "refit on longer sequences",
) -> torch.Tensor:
    """Token positions as a long tensor: whole numbers >= 0 (``NegativePositionError`` below 0), of
    ``shape`` (the activations' leading shape) when given, at most ``upper`` (the largest position
    fitted, ``fix`` saying what to do beyond it) when given; a ``DataError`` naming the fix otherwise."""
    try:
        pt = torch.as_tensor(positions)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"cannot use a {type(positions).__name__} as positions; pass integer positions") from exc
    if shape is not None and tuple(pt.shape) != tuple(shape):
        raise DataError(
            f"positions have shape {tuple(pt.shape)} but the activations {tuple(shape)} (+ d); pass one position per row"
        )
    if pt.dtype == torch.bool or pt.is_complex() or (
        pt.is_floating_point() and not bool((torch.isfinite(pt) & (pt == pt.round())).all())
    ):
        raise DataError(
            f"positions must be integers (token indices, whole numbers), got {pt.dtype} values; pass whole-number positions"
        )
    pt = pt.long()
    if pt.numel() and int(pt.min()) < 0:
        raise NegativePositionError(f"positions contain {int(pt.min())}; positions start at 0: pass positions >= 0")
    if upper is not None and pt.numel() and int(pt.max()) > upper:
        raise DataError(f"position {int(pt.max())} is beyond the fitted range (up to {upper}); {fix}")
    return pt
