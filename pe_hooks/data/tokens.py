"""Turning a user's data into fixed-length token sequences with their real positions."""

from __future__ import annotations

import numbers
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pe_hooks.core.errors import DataError
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_int, check_model, check_token_ids
from pe_hooks.data.corpus import read_text_file, stdlib_docstrings
from pe_hooks.sites.inspect import inspect

DataLike = Any  # None | str | Path | list[str] | torch.Tensor | TokenData


@dataclass
class TokenData:
    """Token sequences of equal length.

    Attributes:
        tokens: ``[n, seq]`` token ids (BOS included where the model prepends one).
        mask: ``[n, seq]`` bool, True for real tokens (False for padding).
        positions: ``[n, seq]`` the position of each token as the model sees it
            (``cumsum(mask) - 1``; padding gets 0).
        texts: the source documents, when known.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    texts: list[str] | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def subset(self, idx: list[int] | torch.Tensor) -> TokenData:
        i = torch.as_tensor(idx, dtype=torch.long)
        texts = [self.texts[int(j)] for j in i] if self.texts is not None else None
        return TokenData(self.tokens[i], self.mask[i], self.positions[i], texts)

    def split(self, n_first: int) -> tuple[TokenData, TokenData]:
        """The first ``n_first`` sequences and the rest (e.g. fit / held-out test)."""
        if not 0 < n_first < len(self):
            raise DataError(f"cannot split {len(self)} sequences at {n_first}")
        return self.subset(list(range(n_first))), self.subset(list(range(n_first, len(self))))


def check_token_data(data: TokenData) -> TokenData:
    """``DataError`` naming the fix if a hand-built ``TokenData``'s mask or positions do not fit its
    tokens: the shapes must match, the mask be 0/1 with a real token in every row, and each real
    token's position be the one the model gives it (``cumsum(mask) - 1``)."""
    shape = tuple(data.tokens.shape)
    fix = "build it as TokenData(tokens, mask, pe_hooks.data.positions_from_mask(mask))"
    for name in ("mask", "positions"):
        value = getattr(data, name)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise DataError(f"TokenData.{name} has shape {got}, its tokens {shape}: one entry per token; {fix}")
    mask = data.mask
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise DataError(f"TokenData.mask must be True/1 for real tokens and False/0 for padding, got other values; {fix}")
    real = mask.bool()
    empty = (~real.any(-1)).nonzero().flatten().tolist()
    if empty:
        raise DataError(f"TokenData rows {empty[:5]} have no real token (an all-False mask); drop those rows")
    want = positions_from_mask(real)
    if bool((data.positions.long() != want)[real].any()):
        raise DataError(
            "TokenData.positions are not the positions the model gives its real tokens (cumsum(mask) - 1: a "
            f"left-padded row starts at 0 after its padding); {fix}"
        )
    return data if mask.dtype == torch.bool else TokenData(data.tokens, real, data.positions, data.texts)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Real positions under (left or right) padding: ``cumsum(mask) - 1``, 0 on padding."""
    pos = mask.long().cumsum(-1) - 1
    return pos.clamp(min=0) * mask.long()


def _bos_id(tokenizer: Any) -> int | None:
    for attr in ("bos_token_id", "cls_token_id"):
        v = getattr(tokenizer, attr, None)
        if v is not None:
            return int(v)
    return None


def tokenize_texts(
    model: Model,
    texts: list[str],
    *,
    seq_len: int,
    n_seqs: int | None = None,
    prepend_bos: bool | None = None,
) -> TokenData:
    """The first ``seq_len`` tokens of each text that is long enough (shorter texts are skipped).

    A BOS token (``[CLS]`` on BERT) is prepended when the model prepends one, so position 0 is
    the BOS and the text starts at position 1, as in the model's own ``to_tokens``.
    """
    sites = inspect(model)
    if seq_len > sites.n_ctx:
        raise DataError(
            f"seq_len {seq_len} exceeds the context of {sites.model_name} ({sites.n_ctx}); lower seq_len"
        )
    if seq_len < 2:
        raise DataError("seq_len must be at least 2")
    tok = model.tokenizer
    if tok is None:
        raise DataError("the model has no tokenizer; pass token ids (a LongTensor [n, seq]) instead of text")
    bos = _bos_id(tok) if (sites.prepend_bos if prepend_bos is None else prepend_bos) else None
    body = seq_len - (1 if bos is not None else 0)
    rows: list[list[int]] = []
    kept: list[str] = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) < body:
            continue
        rows.append(([bos] if bos is not None else []) + list(ids[:body]))
        kept.append(text)
        if n_seqs is not None and len(rows) >= n_seqs:
            break
    if not rows:
        raise DataError(
            f"no text is at least {body} tokens long; lower seq_len (now {seq_len}) or give longer texts"
        )
    if n_seqs is not None and len(rows) < n_seqs:
        raise DataError(
            f"only {len(rows)} texts have {body}+ tokens but {n_seqs} sequences were asked for; "
            "lower n_seqs or seq_len, or give more text"
        )
    tokens = torch.tensor(rows, dtype=torch.long)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    return TokenData(tokens, mask, positions_from_mask(mask), kept)


def load_data(
    model: Model, data: DataLike = None, *, seq_len: int = 64, n_seqs: int | None = None, seed: int = 0,
    at_most: bool = False,
) -> TokenData:
    """Coerce ``data`` into ``TokenData``.

    Args:
        data: ``None`` (the embedded standard-library docstring corpus, shuffled with ``seed``),
            a path to a text file (paragraphs are documents), a list of strings, a
            ``[n, seq]`` LongTensor of token ids (used as is), or a ``TokenData``.
        seq_len: tokens per sequence, BOS included.
        n_seqs: how many sequences (all that fit when ``None``). Token ids with fewer rows are an
            error (never silently fewer), unless ``at_most``.
    """
    check_model(model, "load_data")
    check_int(seq_len, "seq_len", minimum=2)
    if n_seqs is not None:
        check_int(n_seqs, "n_seqs", minimum=1)
    sites = inspect(model)
    vocab = int(getattr(model.cfg, "d_vocab", 0) or 0) or None
    if isinstance(data, TokenData):
        check_token_ids(data.tokens, vocab=vocab, n_ctx=sites.n_ctx, name="TokenData.tokens")
        return check_token_data(data)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, (list, tuple)) and data and all(
        isinstance(row, (list, tuple)) or (isinstance(row, (torch.Tensor, np.ndarray)) and row.ndim == 1) for row in data
    ):  # a list of token-id lists: token ids, never the text "[5, 6, ..."
        rows = [list(r.tolist() if isinstance(r, (torch.Tensor, np.ndarray)) else r) for r in data]
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for r in rows for v in r):
            raise DataError("a list of lists is read as token ids, and these are not all integers; pass texts as a list of strings")
        if len({len(r) for r in rows}) != 1:
            raise DataError("token-id rows have different lengths; give rows of equal length (or texts)")
        data = torch.tensor(rows, dtype=torch.long)
    if isinstance(data, torch.Tensor):
        if data.dtype not in (torch.long, torch.int, torch.int32, torch.int16, torch.uint8):
            raise DataError(f"token tensors must be integer ids, got {data.dtype}; convert with .long() or pass text")
        if data.ndim != 2 or data.numel() == 0:
            raise DataError(
                f"token tensors must be [n, seq] and non-empty, got shape {tuple(data.shape)}"
                + ("; pass one sequence as tokens[None]" if data.ndim == 1 and data.numel() else "")
            )
        if data.shape[1] < 2:
            raise DataError("token sequences must have at least 2 tokens; pass longer sequences")
        check_token_ids(data, vocab=vocab, n_ctx=sites.n_ctx)
        if n_seqs is not None and data.shape[0] < n_seqs and not at_most:
            raise DataError(
                f"the token tensor has {data.shape[0]} sequences but {n_seqs} are needed; pass more rows or lower n_seqs"
            )
        t = data.long()[:n_seqs] if n_seqs else data.long()
        mask = torch.ones_like(t, dtype=torch.bool)
        return TokenData(t, mask, positions_from_mask(mask))
    if data is None:
        texts = list(stdlib_docstrings())
        random.Random(seed).shuffle(texts)
    elif isinstance(data, (str, Path)) and Path(data).exists():
        texts = read_text_file(Path(data))
    elif isinstance(data, str):
        raise DataError(f"'{data}' is not an existing file; pass a path, a list of strings, or token ids")
    elif isinstance(data, (list, tuple)):
        if not data:
            raise DataError("empty list of texts; pass at least one text (or None for the embedded corpus)")
        if not all(isinstance(t, str) for t in data):
            bad = next(t for t in data if not isinstance(t, str))
            raise DataError(f"a list of texts must hold strings, got {type(bad).__name__}; pass strings or token-id lists")
        texts = list(data)
    else:
        raise DataError(
            f"cannot use {type(data).__name__} as data; pass None (the embedded corpus), a path to a text file, a list "
            "of strings, token ids ([n, seq] tensor or a list of id lists) or TokenData"
        )
    return tokenize_texts(model, texts, seq_len=seq_len, n_seqs=n_seqs)
