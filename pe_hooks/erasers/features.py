"""Encodings of position as concept labels ``z`` for LEACE.

LEACE erases every direction in which ``x`` covaries with ``z`` (rank <= ``z_dim``). An integer
position label has ``z_dim = 1`` and erases ONE direction: a probe barely moves, a silent failure,
so integer labels are rejected. Two encodings of the position ``t`` (``T`` = the largest position
the eraser is fitted for):

- ``"fourier"`` (default): ``[t/T, cos(pi f t / T), sin(pi f t / T)]`` for ``f = 1..K``:
  ``2K + 1`` dims capture smooth position dependence at every scale up to ``T / K`` tokens, and
  stay meaningful for positions beyond the fitted range;
- ``"onehot"``: ``n_bins`` equal-width bins of ``1..T`` (``n_bins - 1`` independent dims); with one
  bin per position this is the "oracle" eraser, exactly per-position mean subtraction.
"""

from __future__ import annotations

import math

import torch

from pe_hooks.core.errors import DataError
from pe_hooks.data.labels import position_bins

FEATURES = ("fourier", "onehot")


def fourier_features(t: torch.Tensor, max_position: int, n_freqs: int) -> torch.Tensor:
    """``[n, 2 * n_freqs + 1]`` Fourier encoding of positions ``t`` ``[n]``."""
    tt = t.double() / max(max_position, 1)
    cols = [tt]
    for f in range(1, n_freqs + 1):
        cols += [torch.cos(math.pi * f * tt), torch.sin(math.pi * f * tt)]
    return torch.stack(cols, dim=-1)


def onehot_bins(t: torch.Tensor, max_position: int, n_bins: int, first: int = 1) -> torch.Tensor:
    """``[n, n_bins]`` one-hot of equal-width bins over positions ``first..max_position``."""
    b = position_bins(t, n_bins, first, max(max_position, first))
    return torch.nn.functional.one_hot(b, n_bins).double()


def position_features(t: torch.Tensor, *, kind: str, max_position: int, n_freqs: int = 8, n_bins: int = 16) -> torch.Tensor:
    """Encode integer positions ``t`` as concept labels (see the module docstring)."""
    if kind == "fourier":
        return fourier_features(t, max_position, n_freqs)
    if kind == "onehot":
        return onehot_bins(t, max_position, n_bins)
    raise DataError(f"unknown position features '{kind}'; use one of {FEATURES}")


def feature_dim(kind: str, n_freqs: int, n_bins: int) -> int:
    return 2 * n_freqs + 1 if kind == "fourier" else n_bins


def check_concept_labels(z: torch.Tensor, d_model: int) -> None:
    """Reject labels that would make LEACE erase too little (or more than d dims)."""
    if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):
        raise DataError(
            "integer position labels (z_dim = 1) make LEACE erase a single direction, so position stays "
            "decodable: encode positions with features='fourier' (default) or features='onehot'"
        )
    if z.shape[1] - 1 > d_model:
        raise DataError(
            f"a {z.shape[1]}-dimensional position code needs rank {z.shape[1] - 1} > d_model {d_model}: use a smaller "
            "code (fewer bins: n_bins with features='onehot'; fewer n_freqs with features='fourier')"
        )
