"""Per-row positions from the attention mask, for models whose positions no hook carries (ALiBi).

BLOOM's only positional computation is the ALiBi bias, built inside the model from the attention
mask; no TransformerLens hook sees the mask or the positions before the first attention layer. The
mask *is* visible inside every ``attn.hook_attn_scores``: masked entries hold the dtype's minimum
(or ``-inf``), so a row's key positions are ``cumsum(valid) - 1`` over its last query row (HF's own
convention for left padding) and a query's position is that of its own key column.

``MaskPositions`` records them at layer 0's scores, so every hook that fires later in the same
forward (``resid_mid``/``resid_post`` of layer 0, any site of later layers) gets each row's real
positions. A hook that fires *before* layer 0's scores (``resid_pre`` of layer 0, the embedding)
cannot know them: it is given ``arange(seq)``, and if layer 0's scores then show a row whose real
tokens are not at ``arange`` (left padding), the forward stops with a ``SchemeError`` naming the fix
instead of returning a result computed on the pad slots' positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.types import Model
from pe_hooks.sites.positions import PositionSource, Recorded
from pe_hooks.sites.scheme import PositionalScheme


def positions_from_scores(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(valid [b,q,k], key_pos [b,k], query_pos [b,q])`` (floats) from masked scores ``[b,h,q,k]``."""
    floor = torch.finfo(scores.dtype).min / 2
    valid = scores[:, 0] > floor  # [b, q, k]
    last = valid[:, -1]  # the last query may attend to every real key
    key_pos = (last.long().cumsum(-1) - 1).clamp(min=0)
    q = scores.shape[2]
    query_pos = key_pos[:, -q:]
    return valid, key_pos.float(), query_pos.float()


@dataclass(frozen=True)
class MaskPositions(PositionSource):
    """A ``PositionSource`` that records each forward's per-row positions at layer 0's scores.

    ``hooks``: a reset at the embedding (fires first in every forward) and the recorder at layer
    0's ``hook_attn_scores``; ``get(x)`` returns the recorded positions, or ``arange`` (noted in
    ``guessed``, and checked against the mask when the scores arrive) for a hook that fires before them.
    """

    kind: str = "mask"
    guessed: list[str] = field(default_factory=list)  # this forward's hooks that were given arange

    @classmethod
    def for_model(cls, model: Model, sites: PositionalScheme) -> MaskPositions:
        rec, guessed = Recorded(), list[str]()
        start = next((n for n in ("hook_embed", "embed.hook_out", "embed.hook_in") if n in model.hook_dict), None)

        def reset(x: torch.Tensor, hook: Any) -> None:
            rec.positions = None
            guessed.clear()

        def record(scores: torch.Tensor, hook: Any) -> None:
            rec.positions = _checked_positions(sites, scores, guessed)

        first = () if start is None else ((start, reset),)
        return cls(sites, "mask", (*first, (sites.attn_scores[0], record)), rec, guessed)

    def get(self, like: torch.Tensor) -> torch.Tensor:
        """Per-row positions ``[batch, seq]`` for an activation ``like`` ``[batch, seq, ...]``."""
        b, s = like.shape[0], like.shape[1]
        pos = self.recorded.positions
        if pos is None or tuple(pos.shape) != (b, s):
            self.guessed.append("a hook before layer 0's attention (resid_pre of layer 0)")
            return torch.arange(s, device=like.device).expand(b, s)
        return pos.to(like.device)


def _checked_positions(sites: PositionalScheme, scores: torch.Tensor, guessed: list[str]) -> torch.Tensor:
    """Each row's query positions ``[b, q]`` from layer 0's masked ``scores``; a ``SchemeError`` if
    a hook was given ``arange`` (``guessed``) where the real tokens are not at ``arange``."""
    valid, _, query_pos = positions_from_scores(scores)
    pos = query_pos.long()
    q = scores.shape[2]
    real = valid[:, :, -q:].diagonal(dim1=-2, dim2=-1)  # [b, q]: the query's own key is unmasked
    arange = torch.arange(q, device=pos.device).expand_as(pos)
    if guessed and bool(((pos != arange) & real).any()):
        cached = scores.shape[3] > q
        raise SchemeError(
            f"{sites.model_name} ({sites.scheme.value}) carries no positions before layer 0's "
            f"attention, so a position-dependent hook at {guessed[0]} cannot see "
            + (
                "the positions of a KV-cache step; generate with use_past_kv_cache=False, or act on layers >= 1 only"
                if cached else
                "this batch's left padding (its real tokens are not at positions 0..n-1). Pad on the right "
                "instead (tokenizer.padding_side = 'right': every real token keeps its position), run the rows "
                "one at a time, or act on layers >= 1 only"
            )
        )
    return pos
