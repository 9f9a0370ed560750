"""The input guard: inputs every forward would fail on become pe-hooks errors, before the model runs.

A model's own forward fails deep inside torch or transformers on token ids outside the vocabulary
(``IndexError: index out of range in self``), float token tensors (a shape error) and, with
learned positions (GPT-2, BERT), on more tokens than ``W_pos`` has rows (GPT-2: an ``IndexError``;
BERT: a shape error raised *before any hook fires*, so no pe-hooks hook could catch it). The guard
is one forward pre-hook on the model's HF module (a TransformerBridge) or on its embedding modules
(TL 3.x ``HookedTransformer``) that checks the token ids, the explicit ``position_ids`` and the
number of positions (KV cache included) and raises ``RangeError`` / ``DataError`` naming the fix.

(On TL 3.x, rotary models are bounded too: TransformerLens precomputes their rotary tables for
``n_ctx`` positions; the bridge computes them on the fly and runs beyond ``n_ctx`` like HF.)

It only ever raises where the forward would have failed anyway, so it changes nothing else; it is
installed once per model by ``load_model`` (also when it is given an already-built model:
``pe_hooks.load_model(bridge)``); ``pe_hooks.inspect`` only reads the model and installs nothing. It
is not a TransformerLens hook (``model.reset_hooks()`` and the
hook points are untouched).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from pe_hooks.core.errors import DataError
from pe_hooks.core.types import Model, is_bridge
from pe_hooks.core.validate import check_context, check_position_ids, check_token_ids

_GUARDED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _vocab(model: Model) -> int | None:
    try:
        emb = model.original_model.get_input_embeddings() if is_bridge(model) else model.embed
        return int(emb.weight.shape[0]) if hasattr(emb, "weight") else int(model.W_E.shape[0])
    except Exception:  # a model without a readable embedding: check the dtype and sign only
        n = int(getattr(model.cfg, "d_vocab", 0) or 0)
        return n or None


def _learned_context(model: Model) -> int | None:
    """``n_ctx`` if the model has learned absolute positions (a fixed number of ``W_pos`` rows)."""
    if str(getattr(model.cfg, "positional_embedding_type", "")) != "standard":
        return None
    n = int(getattr(model.cfg, "n_ctx", 0) or 0)
    return n or None


def _cached_length(past: Any) -> int:
    if past is None:
        return 0
    get = getattr(past, "get_seq_length", None)
    if callable(get):
        try:
            return int(get())
        except Exception:
            return 0
    return 0


@dataclass(frozen=True)
class _Limits:
    """What the guard checks (plain values: the hooks stay picklable with the model)."""

    name: str
    vocab: int | None
    n_ctx: int | None  # learned positions only
    d_model: int

    def ids(self, ids: Any) -> None:
        if isinstance(ids, torch.Tensor):
            check_token_ids(ids, vocab=self.vocab, n_ctx=None)


@dataclass(frozen=True)
class _BridgeGuard:
    """Forward pre-hook (with kwargs) on a bridge's HF model."""

    limits: _Limits

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        lim = self.limits
        ids = kwargs.get("input_ids", args[0] if args else None)
        lim.ids(ids)
        embeds = kwargs.get("inputs_embeds")
        if ids is None and isinstance(embeds, torch.Tensor):
            if embeds.ndim != 3 or embeds.shape[-1] != lim.d_model:
                # the bridge passes a float tensor on as input embeddings: float token ids end up here
                raise DataError(
                    f"got a {embeds.dtype} tensor of shape {tuple(embeds.shape)}: not token ids (convert with "
                    f".long()) and not input embeddings [batch, seq, {lim.d_model}]"
                )
            ids = embeds[..., 0]  # only its length counts below
        if lim.n_ctx is None:
            return
        pos = kwargs.get("position_ids")
        if isinstance(pos, torch.Tensor):
            check_position_ids(pos, lim.n_ctx, lim.name)
        elif isinstance(ids, torch.Tensor) and ids.ndim >= 1:
            cached = _cached_length(kwargs.get("past_key_values"))
            check_context(cached + int(ids.shape[-1]), lim.n_ctx, lim.name, cached=cached)


@dataclass(frozen=True)
class _HookedEmbedGuard:
    """Forward pre-hook on a HookedTransformer's ``embed`` (token ids)."""

    limits: _Limits

    def __call__(self, module: Any, args: tuple[Any, ...]) -> None:
        self.limits.ids(args[0] if args else None)


@dataclass(frozen=True)
class _HookedPosEmbedGuard:
    """Forward pre-hook on a HookedTransformer's ``pos_embed(tokens, past_kv_pos_offset, ...)``."""

    limits: _Limits

    def __call__(self, module: Any, args: tuple[Any, ...]) -> None:
        tokens = args[0] if args else None
        offset = int(args[1]) if len(args) > 1 and isinstance(args[1], int) else 0
        if isinstance(tokens, torch.Tensor) and tokens.ndim >= 1 and self.limits.n_ctx is not None:
            check_context(offset + int(tokens.shape[-1]), self.limits.n_ctx, self.limits.name, cached=offset)


@dataclass(frozen=True)
class _HookedRotaryGuard:
    """Forward pre-hook (with kwargs) on the first attention of a rotary HookedTransformer: TL 3
    precomputes its rotary tables for ``n_ctx`` positions (the bridge computes them on the fly)."""

    limits: _Limits
    n_ctx: int

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        query = kwargs.get("query_input", args[0] if args else None)
        keys = getattr(kwargs.get("past_kv_cache_entry"), "past_keys", None)
        cached = int(keys.shape[1]) if isinstance(keys, torch.Tensor) else 0
        if isinstance(query, torch.Tensor) and query.ndim >= 2:
            check_context(cached + int(query.shape[1]), self.n_ctx, self.limits.name, cached=cached,
                          table="its rotary tables cover")


def install_input_guard(model: Model) -> None:
    """Install the guard on ``model`` (once; later calls do nothing)."""
    if model in _GUARDED:
        return
    cfg = model.cfg
    limits = _Limits(
        name=str(getattr(cfg, "model_name", None) or type(model).__name__), vocab=_vocab(model),
        n_ctx=_learned_context(model), d_model=int(cfg.d_model),
    )
    if is_bridge(model):
        _GUARDED[model] = [model.original_model.register_forward_pre_hook(_BridgeGuard(limits), with_kwargs=True)]
        return
    handles = [model.embed.register_forward_pre_hook(_HookedEmbedGuard(limits))]
    if limits.n_ctx is not None and getattr(model, "pos_embed", None) is not None:
        handles.append(model.pos_embed.register_forward_pre_hook(_HookedPosEmbedGuard(limits)))
    n_ctx = int(getattr(cfg, "n_ctx", 0) or 0)
    if str(getattr(cfg, "positional_embedding_type", "")) == "rotary" and n_ctx and len(model.blocks):
        handles.append(model.blocks[0].attn.register_forward_pre_hook(_HookedRotaryGuard(limits, n_ctx), with_kwargs=True))
    _GUARDED[model] = handles
