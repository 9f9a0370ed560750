"""Mean over each row's own positions: what ``remove`` without ``reference=`` averages.

A batch row's positions ``t[b]`` are its real ones (left padding and KV caches included), so the
positions "in use" for that row are ``0..max t[b]`` — not ``0..`` the longest row of the batch. A
short row padded beside a long one must get exactly what it gets alone.
"""

from __future__ import annotations

import torch


def own_prefix_mean(rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``out[b] = rows[0 .. max t[b]].mean(0)`` for each batch row: ``[b, 1, *rows.shape[1:]]``.

    ``rows`` ``[n, ...]`` holds one entry per position (W_pos rows, cos/sin of each angle...) and must
    cover ``max t``. Each distinct row length is averaged once, with the same reduction a single
    row alone gets, so a padded row matches its unpadded run to the last bit.
    """
    last = t.reshape(t.shape[0], -1).long().amax(-1)  # [b]
    if int(last.max()) >= rows.shape[0]:
        raise IndexError(f"position {int(last.max())} has no row in a table of {rows.shape[0]}")
    out = torch.empty((t.shape[0], *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    for m in last.unique().tolist():
        out[last.to(rows.device) == m] = rows[: m + 1].mean(0)
    return out[:, None]
