"""Where a hook can learn the positions of the current forward pass.

Hooks at residual sites see ``[batch, seq, d]`` and nothing else; under a KV cache, ``seq`` is 1
and its position is the number of cached tokens. A ``PositionSource`` is a pair of hooks on an
early site that records the real positions of every forward (from the model's own positional
computation), and a getter that later hooks in the same forward call:

- rotary models: decoded from the top-level ``rotary_emb.hook_cos/sin`` tables;
- learned / sinusoidal tables: the row ids seen by ``pos_embed.hook_in`` minus the table's offset
  where that hook carries them (GPT-2, BERT, RoBERTa), else the row of the whole table each
  ``hook_pos_embed`` vector equals minus the offset (OPT, BART, Marian; TL 3.x: rows of ``W_pos``);
- otherwise (ALiBi): ``arange(seq)``, valid only without a KV cache — a one-token forward after a
  longer one raises instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pe_hooks.core.errors import DataError, SchemeError
from pe_hooks.core.types import HookFn, Model
from pe_hooks.sites.registry import Scheme
from pe_hooks.sites.rotary_positions import PositionTracker, candidate_freqs
from pe_hooks.sites.scheme import PositionalScheme
from pe_hooks.sites.tables import TABLE_INPUTS, TableFacts, match_rows, position_table, positions_of

__all__ = ["PositionSource", "Recorded", "match_rows", "position_source", "table_positions"]


@dataclass
class Recorded:
    """The positions ``[batch, seq]`` a source's hooks recorded in the current forward (``None``:
    none yet): the only state of a ``PositionSource`` that changes after it is built."""

    positions: torch.Tensor | None = None


@dataclass(frozen=True)
class PositionSource:
    """Records each forward's positions ``[batch, seq]`` for hooks that run later in it: ``hooks``
    write them into ``recorded``, ``get`` reads them (``kind="arange"``: ``arange(seq)``)."""

    sites: PositionalScheme
    kind: str = "arange"
    hooks: tuple[tuple[str, HookFn], ...] = ()
    recorded: Recorded = field(default_factory=Recorded)

    def get(self, like: torch.Tensor) -> torch.Tensor:
        """Positions for an activation ``like`` of shape ``[batch, seq, ...]``."""
        b, s = like.shape[0], like.shape[1]
        if self.kind == "arange":
            return torch.arange(s, device=like.device).expand(b, s)
        if self.recorded.positions is None:
            raise RuntimeError("positions were not recorded: the position hooks did not fire")
        pos = self.recorded.positions.to(like.device)
        if pos.shape[-1] != s:
            raise RuntimeError(f"recorded positions {tuple(pos.shape)} do not match activation {tuple(like.shape)}")
        return pos.expand(b, s)


def position_source(model: Model, sites: PositionalScheme) -> PositionSource:
    """The best position source for ``model`` (see the module docstring)."""
    if sites.scheme is Scheme.ROTARY and sites.rotary_cos is not None and sites.rotary_sin is not None:
        layout = sites.rotary_layout
        tracker = PositionTracker(candidate_freqs(model, sites), interleaved=layout is not None and layout.tables == "repeated")
        rec = Recorded()

        def after(sin: torch.Tensor, hook: Any) -> None:
            rec.positions = tracker.get()

        return PositionSource(sites, "rotary", (*tracker.hooks(sites), (sites.rotary_sin, after)), rec)
    if sites.scheme in (Scheme.LEARNED, Scheme.SINUSOIDAL) and sites.pos_embed:
        return table_positions(model, sites, sites.family.tables[0] if sites.family.tables else None)
    if sites.scheme is Scheme.ALIBI and sites.attn_scores:  # issue 23: per-row positions from the mask
        from pe_hooks.sites.padding import MaskPositions

        return MaskPositions.for_model(model, sites)
    seen_long = {"flag": False}

    def guard(t: torch.Tensor, hook: Any) -> None:
        if t.shape[1] > 1:
            seen_long["flag"] = True
        elif seen_long["flag"]:
            raise SchemeError(
                f"{sites.model_name} ({sites.scheme.value}) exposes no hook that carries positions, so "
                "position-dependent hooks cannot follow KV-cache decoding; generate with "
                "use_past_kv_cache=False"
            )

    return PositionSource(sites, "arange", (("hook_embed", guard),) if "hook_embed" in model.hook_dict else ())


def table_positions(model: Model, sites: PositionalScheme, table: TableFacts | None) -> PositionSource:
    """Positions of each forward as one absolute position table sees them (``t = row - offset``;
    ``-1``: a padding token's row before position 0): from the row ids its input hook carries, or
    from the rows its output vectors equal. ``table=None``: ``hook_pos_embed`` over ``W_pos``, offset 0."""
    rec = Recorded()
    hook = table.hook if table is not None else "hook_pos_embed"
    offset = table.offset if table is not None else 0
    n_pos = table.positions if table is not None else sites.n_ctx
    ids_hook = sites.pos_ids_hook if table is None else TABLE_INPUTS[hook] if table.ids_index else None
    if ids_hook:

        def ids(t: torch.Tensor, hook: Any) -> None:
            if t.numel() and n_pos and int(t.max()) - offset >= n_pos:
                raise DataError(
                    f"position {int(t.max()) - offset} is beyond the context of {sites.model_name} ({n_pos} positions: "
                    f"W_pos has rows 0..{n_pos - 1}); shorten the sequence to at most {n_pos} tokens"
                )
            rec.positions = t.long() - offset

        return PositionSource(sites, "pos_ids", ((ids_hook, ids),), rec)
    full = position_table(model, hook)
    rows = (full if full is not None else model.W_pos).detach()

    def match(x: torch.Tensor, hook: Any) -> None:
        pos = positions_of(x, rows, offset)
        rec.positions = pos if x.ndim == 3 else pos[None]  # [seq, d] tables (no batch dimension)

    return PositionSource(sites, "w_pos_match", ((hook, match),), rec)
