"""Rotary frequency bands: pick them (``frequency_bands``) and turn a selection into a mask.

Band ``k`` is the pair of q/k dimensions rotated by ``inv_freq[k]`` (0 = the highest frequency in
HF's layout). ``bands=`` / ``keep_bands=`` of the rotary verbs take indices or a boolean mask.
"""

from __future__ import annotations

from typing import Literal

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_int
from pe_hooks.interventions.base import Bands
from pe_hooks.sites.inspect import inspect, rotary_frequencies
from pe_hooks.sites.registry import Scheme


def frequency_bands(model: Model, which: Literal["low", "high"] = "low", n: int = 8, layer: int = 0) -> list[int]:
    """Indices of the ``n`` lowest- or highest-frequency rotary bands (for ``bands=``)."""
    if which not in ("low", "high"):
        raise SchemeError(f"which must be 'low' or 'high', got {which!r}; pass which='low' or which='high'")
    n = check_int(n, "n", minimum=1)
    sites = inspect(model)
    sites.require_positions()
    if sites.scheme is not Scheme.ROTARY:
        raise SchemeError(
            f"frequency_bands applies to rotary models; {sites.model_name} has {sites.scheme.value} positions "
            "(use zero/remove/replace without bands=)"
        )
    layer = sites.check_layers([layer])[0]
    inv, _ = rotary_frequencies(model, layer)
    if not 0 < n <= inv.numel():
        raise SchemeError(f"n must be in 1..{inv.numel()} (the model has {inv.numel()} rotary bands); pass n <= {inv.numel()}")
    order = torch.argsort(inv, descending=(which == "high")).tolist()
    return sorted(order[:n])


def band_mask(bands: Bands, half: int) -> torch.Tensor:
    if bands is None:
        return torch.ones(half, dtype=torch.bool)
    b = torch.as_tensor(bands)
    if b.dtype == torch.bool:
        if b.numel() != half:
            raise SchemeError(f"a boolean band mask needs {half} entries (one per band), got {b.numel()}; pass a mask of {half}")
        return b.detach().flatten().clone()  # a copy: the user's later edits of their mask change nothing
    idx = b.long().flatten()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= half):
        raise SchemeError(
            f"band indices must be in 0..{half - 1} (the model has {half} rotary bands); pass bands in 0..{half - 1}"
        )
    dupes = sorted({int(i) for i in idx if int((idx == i).sum()) > 1})
    if dupes:
        raise SchemeError(f"bands {idx.tolist()} repeat {dupes}; give each band once")
    mask = torch.zeros(half, dtype=torch.bool)
    mask[idx] = True
    return mask
