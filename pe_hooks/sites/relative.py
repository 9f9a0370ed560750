"""Relative position bias (T5-style buckets): where it is and how the model computes it.

T5, mT5, LongT5 and SwitchTransformers add ``bias[h, q, k] = table[bucket(t_k - t_q), h]`` to the
attention scores, computed once per stack (in the first layer, shared by every layer) from a small
table of ``num_buckets`` rows: exact buckets for short distances, logarithmic ones up to
``max_distance``, one-sided in the (causal) decoder. The bridge's ``hook_pos_embed`` (encoder) and
``decoder_pos_embed.hook_out`` (decoder) carry that bias as ``[q, k, heads]``; their ``hook_in``
carries the buckets ``[q, k]``.

``measure_relative`` reads, from the module that owns the table (found by identity, not by class
name), what the bucketing needs, and checks it on the model's own forward: the buckets it
computes for ``t_k - t_q`` must equal the ones the model used (``RelativeFacts.buckets_match``).
LongT5's local attention computes its bias over a block window (``[block, 3 * block]``, positions
inside the window, not in the sequence): ``windowed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pe_hooks.core.types import Model, is_bridge
from pe_hooks.sites.tables import TABLE_HOOKS


@dataclass(frozen=True)
class RelativeFacts:
    """One stack's relative position bias (measured by ``measure_relative``).

    Attributes:
        hook: the hook carrying the bias ``[q, k, heads]``.
        num_buckets: rows of the bias table.
        max_distance: the distance beyond which every distance shares the last bucket.
        bidirectional: keys after the query have their own buckets (encoder), or not (decoder).
        n_heads: heads of the bias.
        buckets_match: the buckets recomputed from ``t_k - t_q`` equal the model's own.
        windowed: the bias covers a block window (LongT5 local attention), not the sequence.
    """

    hook: str
    num_buckets: int
    max_distance: int
    bidirectional: bool
    n_heads: int
    buckets_match: bool = True
    windowed: bool = False


def bias_owner(model: Model, hook: str) -> Any:
    """The HF attention module whose ``relative_attention_bias`` table the bias at ``hook`` reads."""
    if not is_bridge(model):
        return None
    table = getattr(getattr(model, TABLE_HOOKS.get(hook, ""), None), "original_component", None)
    if table is None:
        return None
    for module in model.original_model.modules():
        own = getattr(module, "relative_attention_bias", None)
        own = getattr(own, "original_component", own)  # the bridge wraps the HF table in place
        if own is table and hasattr(module, "_relative_position_bucket"):
            return module
    return None


def bucket_fn(model: Model, hook: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``relative position [..] -> bucket [..]`` exactly as the model computes it at ``hook``."""
    owner = bias_owner(model, hook)
    if owner is None:
        return None

    def buckets(rel: torch.Tensor) -> torch.Tensor:
        return owner._relative_position_bucket(  # type: ignore[no-any-return]
            rel.long(), bidirectional=not bool(owner.is_decoder),
            num_buckets=int(owner.relative_attention_num_buckets), max_distance=int(owner.relative_attention_max_distance),
        )

    return buckets


def bias_table(model: Model, hook: str) -> torch.Tensor:
    """The ``[num_buckets, heads]`` table the bias at ``hook`` reads."""
    table = getattr(getattr(model, TABLE_HOOKS[hook]), "original_component")  # noqa: B009
    return table.weight  # type: ignore[no-any-return]


def measure_relative(model: Model, hook: str, out: torch.Tensor, buckets: torch.Tensor | None) -> RelativeFacts | None:
    """``RelativeFacts`` of the bias at ``hook`` from one forward's output ``out`` ``[q, k, heads]``
    and the buckets its input hook saw; ``None`` when ``hook`` is not a relative bias."""
    owner = bias_owner(model, hook)
    fn = bucket_fn(model, hook)
    if owner is None or fn is None or out.ndim != 3:
        return None
    q, k = int(out.shape[0]), int(out.shape[1])
    windowed = q != k
    match = False
    if buckets is not None and not windowed and tuple(buckets.shape) == (q, k):
        rel = torch.arange(k)[None, :] - torch.arange(q)[:, None]
        match = bool((fn(rel.to(buckets.device)) == buckets).all())
    return RelativeFacts(
        hook=hook, num_buckets=int(owner.relative_attention_num_buckets),
        max_distance=int(owner.relative_attention_max_distance), bidirectional=not bool(owner.is_decoder),
        n_heads=int(out.shape[-1]), buckets_match=match, windowed=windowed,
    )
