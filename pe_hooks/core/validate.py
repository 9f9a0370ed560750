"""Argument checks shared by every public entry point: each raises a ``PeHooksError`` subclass
whose message says what was wrong and what to do.

Used at the API's edges (the verbs, ``load_data``, ``fit_eraser``, ``sweep``, ``branches``,
``load_model``, the CLI), so a bad value fails at once, before any forward pass, instead of as a
traceback from inside torch or as a silent wrong result.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch

from pe_hooks.core.errors import ArgumentError, DataError, ModelMismatchError, RangeError
from pe_hooks.core.types import Model, is_bridge, is_model


def check_model(model: Any, where: str = "this call") -> Model:
    """``model`` must be a TransformerBridge / HookedTransformer (not a name, not ``None``)."""
    if not is_model(model):
        hint = " (a model name: load it first with pe_hooks.load_model(name))" if isinstance(model, str) else ""
        raise ArgumentError(
            f"{where} needs a TransformerBridge or HookedTransformer, got {type(model).__name__}{hint}"
        )
    return model


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None, fix: str = ""
) -> int:
    """An integer (not a bool, not a float, not a string) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
            value = int(value)
        else:
            example = minimum if minimum is not None else (maximum if maximum is not None else 1)
            raise ArgumentError(
                f"{name} must be an integer, got {value!r} ({type(value).__name__}); pass a whole number such as {example}"
            )
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        lo = "" if minimum is None else f"{minimum}"
        hi = "" if maximum is None else f"{maximum}"
        rng = f"{lo}..{hi}" if lo and hi else (f">= {lo}" if lo else f"<= {hi}")
        raise ArgumentError(f"{name} must be {rng}, got {v}" + (f"; {fix}" if fix else ""))
    return v


def check_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` (not ``"no"``, not ``0``)."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be True or False, got {value!r}; pass {name}=True or {name}=False")
    return value


def check_number(
    value: Any, name: str, *, positive: bool = False, minimum: float | None = None, maximum: float | None = None,
    fix: str = "",
) -> float:
    """A finite real number (not a bool); ``> 0`` when ``positive``; within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ArgumentError(f"{name} must be a finite number, got {value!r}" + (f"; {fix}" if fix else ""))
    v = float(value)
    if positive and v <= 0:
        raise ArgumentError(f"{name} must be > 0, got {value!r}" + (f"; {fix}" if fix else ""))
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        rng = f"{minimum:g}..{maximum:g}" if minimum is not None and maximum is not None else (
            f">= {minimum:g}" if minimum is not None else f"<= {maximum:g}")
        raise ArgumentError(f"{name} must be {rng}, got {value!r}" + (f"; {fix}" if fix else ""))
    return v


def check_indices(
    values: Any, name: str, n: int | None, *, allow_negative: bool = False, what: str = "", allow_empty: bool = False,
    unique: bool = True,
) -> list[int]:
    """A non-empty list of distinct integer indices into ``0..n-1`` (any index ``>= 0`` when ``n`` is
    None; negative ones count from the end when ``allow_negative``); returns them normalised."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values]
    vals = list(values.tolist() if isinstance(values, torch.Tensor) else values)
    if not vals and not allow_empty:
        raise ArgumentError(f"{name}=[] selects nothing; pass None (all) or at least one index")
    out: list[int] = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ArgumentError(f"{name} must be integers, got {v!r} ({type(v).__name__}); e.g. {name}=[0, 1]")
        i = int(v) + n if (allow_negative and n is not None and int(v) < 0) else int(v)
        if n is None and i < 0:
            raise RangeError(f"{name} {int(v)} does not exist: {what or name} start at 0; pass {name} >= 0")
        if n is not None and not 0 <= i < n:
            one = name[:-1] if name.endswith("s") else name
            raise RangeError(
                f"{one} {int(v)} does not exist: {what or name} 0..{n - 1}; pass {name} in 0..{n - 1}"
                + (" (negative ones count from the end)" if allow_negative else "")
            )
        out.append(i)
    dupes = sorted({i for i in out if out.count(i) > 1}) if unique else []
    if dupes:
        raise ArgumentError(f"{name} {vals} repeats {dupes}; give each index once")
    return out


def check_token_ids(tokens: torch.Tensor, *, vocab: int | None, n_ctx: int | None, name: str = "tokens") -> torch.Tensor:
    """Integer token ids ``[n, seq]`` in ``0..vocab-1``, at most ``n_ctx`` per sequence."""
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise DataError(f"{name} must be integer token ids, got {tokens.dtype}; convert with .long() or pass text")
    if tokens.numel() and int(tokens.min()) < 0:
        raise RangeError(
            f"{name} contain a negative id ({int(tokens.min())}); token ids start at 0: tokenise with this model's tokenizer"
        )
    if vocab is not None and tokens.numel() and int(tokens.max()) >= vocab:
        raise RangeError(
            f"{name} contain id {int(tokens.max())} but the vocabulary has {vocab} tokens (0..{vocab - 1}); "
            "tokenise with this model's tokenizer"
        )
    if n_ctx is not None and tokens.ndim >= 1 and tokens.shape[-1] > n_ctx:
        raise DataError(
            f"sequences of {tokens.shape[-1]} tokens exceed the model context {n_ctx}; shorten them (seq_len <= {n_ctx})"
        )
    return tokens


def check_context(n_positions: int, n_ctx: int, model_name: str, *, cached: int = 0, table: str = "W_pos has rows") -> None:
    """A forward that would use positions ``0..n_positions-1`` must fit a position table (a learned
    ``W_pos``, or TL 3's precomputed rotary tables) of ``n_ctx`` rows, ``cached`` of them already
    in a KV cache."""
    if n_positions > n_ctx:
        what = f"{n_positions - cached} new tokens after {cached} cached ones" if cached else f"a sequence of {n_positions} tokens"
        raise DataError(
            f"{what} exceeds the context of {model_name} ({n_ctx} positions: {table} 0..{n_ctx - 1}); "
            f"shorten the sequence to at most {n_ctx} tokens"
        )


def check_position_ids(position_ids: torch.Tensor, n_ctx: int, model_name: str) -> None:
    """Explicit ``position_ids`` given to a model with learned positions: integers in ``0..n_ctx-1``."""
    if position_ids.is_floating_point() or position_ids.is_complex() or position_ids.dtype == torch.bool:
        raise DataError(f"position_ids must be integer positions, got {position_ids.dtype}; convert with .long()")
    if position_ids.numel() == 0:
        return
    lo, hi = int(position_ids.min()), int(position_ids.max())
    if lo < 0:
        raise RangeError(f"position_ids contain {lo}; positions start at 0 (pass position_ids >= 0)")
    check_context(hi + 1, n_ctx, model_name)


def model_fingerprint(model: Model) -> dict[str, Any]:
    """What identifies a model cheaply: architecture, sizes, and a few weights of ``W_E``.

    Stored with saved erasers and compared by ``check_fingerprint`` (weights at 1e-2 relative, so
    the same model in another dtype or device still matches; other weights never do).
    """
    cfg = model.cfg
    fp: dict[str, Any] = {
        "architecture": type(model.original_model).__name__ if is_bridge(model)
        else str(getattr(cfg, "original_architecture", None) or type(model).__name__),
        "d_model": int(cfg.d_model),
        "n_layers": int(cfg.n_layers),
        "d_vocab": int(getattr(cfg, "d_vocab", 0) or 0),
    }
    try:
        w = model.W_E.detach()
        fp["weights"] = [round(float(v), 6) for v in w[:4, :8].float().cpu().flatten().tolist()]
    except Exception:  # a model without a readable W_E: sizes only
        fp["weights"] = None
    return fp


def fingerprint_differences(saved: dict[str, Any], model: Model) -> list[str]:
    """How ``model`` differs from a stored fingerprint (empty when it matches)."""
    now = model_fingerprint(model)
    diffs = [f"{k} {saved[k]} vs {now[k]}" for k in ("architecture", "d_model", "n_layers", "d_vocab")
             if k in saved and saved[k] != now.get(k)]
    a, b = saved.get("weights"), now.get("weights")
    if not diffs and a is not None and b is not None:
        ta, tb = torch.tensor(a), torch.tensor(b)
        if ta.shape != tb.shape or not torch.allclose(ta, tb, rtol=1e-2, atol=1e-3):
            diffs.append("other weights (W_E differs)")
    return diffs


def check_fingerprint(saved: dict[str, Any] | None, model: Model, what: str) -> None:
    """Raise ``ModelMismatchError`` when ``model`` is not the model ``saved`` describes."""
    if not saved:
        return
    diffs = fingerprint_differences(saved, model)
    if diffs:
        raise ModelMismatchError(
            f"{what} was built for another model ({'; '.join(diffs)}); fit or build it again on this model"
        )
