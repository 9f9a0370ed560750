"""Absolute position tables (learned or sinusoidal): where they are and how the model indexes them.

A table model adds ``table[t + offset]`` to token ``t``'s embedding: GPT-2 and BERT index row ``t``,
OPT and BART ``t + 2`` (two extra rows), RoBERTa ``t + padding_idx + 1``; M2M100's sinusoidal table
also sits two rows in. Every encoder-decoder model has one table per stack. What pe-hooks needs of
one table, measured on the model's own forward (``measure_table``), is a ``TableFacts``:

- ``offset``: the row position 0 reads (the row the first token's vector equals);
- ``ids_index``: the table's ``hook_in`` carries the row indices themselves (GPT-2, RoBERTa), so the
  positions are ``hook_in - offset``; otherwise (OPT's attention mask, BART's embeddings, a shape
  tuple) they are recovered from the rows each output vector equals (``positions_of``);
- ``batched``: the output has a batch dimension (Blenderbot, LED, Marian, Pegasus return ``[seq, d]``);
- ``trainable``: the table is a trained parameter (learned) or fixed (sinusoidal).

No architecture class is named: the table is whatever tensor the bridge's positional module
indexes (its ``weight`` parameter, or ``weights`` buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pe_hooks.core.types import Model, is_bridge

#: the table hooks of each stack: hook name -> the bridge attribute of its positional module
TABLE_HOOKS: dict[str, str] = {"hook_pos_embed": "pos_embed", "decoder_pos_embed.hook_out": "decoder_pos_embed"}
#: the hook carrying each table's input (row ids, a mask, embeddings... whatever the model passes)
TABLE_INPUTS: dict[str, str] = {"hook_pos_embed": "pos_embed.hook_in", "decoder_pos_embed.hook_out": "decoder_pos_embed.hook_in"}
#: the stack each table hook belongs to (decoder-only and encoder-only models have one, "model")
STACKS: dict[str, str] = {"hook_pos_embed": "encoder", "decoder_pos_embed.hook_out": "decoder"}


@dataclass(frozen=True)
class TableFacts:
    """How one model indexes one position table (measured by ``measure_table``).

    Attributes:
        hook: the hook that carries the table's output (``hook_pos_embed``...).
        rows: rows in the table.
        offset: the row position 0 reads.
        ids_index: the table's input hook carries the row indices it reads.
        batched: the output is ``[batch, seq, d]`` (else ``[seq, d]``).
        trainable: the table is a trained parameter (else fixed: sinusoidal).
    """

    hook: str
    rows: int
    offset: int = 0
    ids_index: bool = False
    batched: bool = True
    trainable: bool = True

    @property
    def positions(self) -> int:
        """How many positions the table holds (its rows past the offset)."""
        return self.rows - self.offset


def position_table(model: Model, hook: str = "hook_pos_embed") -> torch.Tensor | None:
    """The whole table the positional module behind ``hook`` indexes (``None`` if it has none)."""
    if not is_bridge(model):
        return model.W_pos if hook == "hook_pos_embed" and hasattr(model, "W_pos") else None  # type: ignore[no-any-return]
    module = getattr(getattr(model, TABLE_HOOKS.get(hook, ""), None), "original_component", None)
    for name in ("weight", "weights"):
        t = getattr(module, name, None)
        if isinstance(t, torch.Tensor) and t.ndim == 2:
            return t
    return None


def hidden_fixed_table(model: Model) -> str | None:
    """The HF module path of a fixed (buffer) position table that no bridge hook wraps (XGLM adds
    its sinusoidal table inside the HF model, where no hook sees it), or ``None``."""
    if not is_bridge(model) or position_table(model) is not None:
        return None
    d = int(model.cfg.d_model)
    for path, module in model.original_model.named_modules():
        for _, buf in module.named_buffers(recurse=False):
            if buf.ndim == 2 and buf.shape[1] == d and buf.shape[0] >= 2 and buf.is_floating_point():
                return path
    return None


def match_rows(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index of the row of ``table`` ``[n, d]`` nearest to each vector of ``x`` ``[..., d]``."""
    flat = x.reshape(-1, x.shape[-1]).to(table.dtype)
    d = torch.cdist(flat, table.to(x.device))
    return d.argmin(-1).reshape(x.shape[:-1])


def measure_table(model: Model, hook: str, out: torch.Tensor, inp: torch.Tensor | None) -> TableFacts | None:
    """``TableFacts`` of the table behind ``hook`` from one forward's output ``out`` (and the
    input ``inp`` its input hook saw); ``None`` if ``out`` is not rows of that table."""
    table = position_table(model, hook)
    if table is None or out.shape[-1] != table.shape[-1]:
        return None
    with torch.no_grad():
        rows = match_rows(out.detach(), table.detach())
        exact = torch.allclose(table.detach()[rows].to(out.dtype), out.detach(), atol=1e-6)
        if not exact:
            return None
        offset = int(rows.reshape(-1)[0])
        ids = inp is not None and not inp.is_floating_point() and tuple(inp.shape) == tuple(rows.shape) and bool(
            (inp.to(rows.device) == rows).all())
    trainable = isinstance(table, torch.nn.Parameter) and bool(table.requires_grad)
    return TableFacts(hook=hook, rows=int(table.shape[0]), offset=offset, ids_index=ids, batched=out.ndim == 3,
                      trainable=trainable)


def positions_of(x: torch.Tensor, table: torch.Tensor, offset: int) -> torch.Tensor:
    """The position of each vector of ``x`` ``[..., d]``: its row of ``table`` minus ``offset``
    (``-1`` and below: a row before position 0, i.e. a padding token's row)."""
    return match_rows(x, table) - offset
