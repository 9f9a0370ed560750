"""Whether a bridge's attention is its HF model's attention, measured layer by layer.

TransformerLens 4 reimplements the attention of some architectures inside its bridge components
(to fire hooks between the steps) instead of calling the HF module. Where the reimplementation
differs from the HF module (TL 4.3's Falcon with ``alibi=True`` adds half of BLOOM's slopes), the
bridge is not the HF model: no verb can be proven against the HF model edited by hand, whatever
site it edits. ``attention_vs_hf(model)`` runs one forward on six tokens recording what each
``blocks.{i}.attn`` receives and returns, then calls that block's own HF module
(``original_component``) on the same inputs (its KV cache dropped) and compares the outputs.
Nothing is stored on the model; the hooks are removed again and gradients are off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pe_hooks.core.types import Model, is_bridge

#: a reimplemented attention counts as the HF one within this relative difference (of the HF
#: output's largest value), or ``EPS_FACTOR`` times the dtype's epsilon where that is larger
REL_TOL = 1e-4
EPS_FACTOR = 4.0
_CACHE_KWARGS = ("past_key_value", "past_key_values", "layer_past", "cache_position")


@dataclass(frozen=True)
class AttentionFidelity:
    """How far each bridge attention block is from its HF module on the same inputs.

    Attributes:
        rel_diff: layer -> max |bridge - HF| over the HF output's largest |value|.
        tol: the tolerance (``REL_TOL``, or ``EPS_FACTOR`` * the dtype's epsilon).
        error: why it could not be compared (then nothing is known, and nothing is refused).
    """

    rel_diff: Mapping[int, float]
    tol: float = REL_TOL
    error: str | None = None

    @property
    def differs(self) -> tuple[int, ...]:
        """The layers whose bridge attention differs from their HF module."""
        return tuple(i for i, d in sorted(self.rel_diff.items()) if d > self.tol)

    @property
    def worst(self) -> float:
        return max(self.rel_diff.values(), default=0.0)


def _first(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _attn_blocks(model: Model) -> dict[int, torch.nn.Module]:
    out: dict[int, torch.nn.Module] = {}
    for i, block in enumerate(getattr(model, "blocks", None) or ()):
        attn = getattr(block, "attn", None)
        if isinstance(attn, torch.nn.Module) and isinstance(getattr(attn, "original_component", None), torch.nn.Module):
            out[i] = attn
    return out


def _without_cache(kwargs: dict[str, Any]) -> dict[str, Any]:
    kw = {k: (None if k in _CACHE_KWARGS else v) for k, v in kwargs.items()}
    if "use_cache" in kw:
        kw["use_cache"] = False
    return kw


def attention_vs_hf(model: Model, ids: torch.Tensor) -> AttentionFidelity | None:
    """Each bridge attention block vs its HF module on what it received in a forward on ``ids``;
    ``None`` on a model with no wrapped attention (TL 3.x, state-space mixers)."""
    blocks = _attn_blocks(model) if is_bridge(model) else {}
    if not blocks:
        return None
    seen: dict[int, tuple[tuple[Any, ...], dict[str, Any], Any]] = {}
    handles = []
    for i, attn in blocks.items():
        def post(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, i: int = i) -> None:
            seen.setdefault(i, (args, _without_cache(kwargs), _first(out)))

        handles.append(attn.register_forward_hook(post, with_kwargs=True))
    dtype = next(iter(model.parameters())).dtype  # type: ignore[union-attr]
    tol = max(REL_TOL, EPS_FACTOR * float(torch.finfo(dtype).eps)) if dtype.is_floating_point else REL_TOL
    try:
        with torch.no_grad():
            model(ids)
            diffs: dict[int, float] = {}
            for i, (args, kwargs, got) in seen.items():
                want = _first(blocks[i].original_component(*args, **kwargs))  # type: ignore[operator]
                if got is None or want is None or got.shape != want.shape:
                    return AttentionFidelity({}, tol, f"layer {i}: outputs not comparable")
                scale = float(want.abs().max()) or 1.0
                diffs[i] = float((got.float() - want.float()).abs().max()) / scale
    except Exception as exc:  # the HF module would not take the bridge's inputs: unknown
        return AttentionFidelity({}, tol, " ".join(f"{type(exc).__name__}: {exc}".split())[:200])
    finally:
        for h in handles:
            h.remove()
    return AttentionFidelity(diffs, tol)
