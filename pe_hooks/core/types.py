"""Shared types: what a hook function is, what a model is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import torch

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint


class HookFn(Protocol):
    """TransformerLens forward-hook contract: ``fn(activation, hook) -> activation | None``.

    The second parameter must be called ``hook``.
    """

    def __call__(self, tensor: torch.Tensor, /, hook: HookPoint) -> torch.Tensor | None: ...


HookPair: TypeAlias = "tuple[str, HookFn]"

# A TransformerLens model: ``TransformerBridge`` (TL 4.x) or ``HookedTransformer`` (TL 3.x).
# Both are ``HookedRootModule``s; kept as ``Any`` at runtime because TL 3 and TL 4 cannot be
# installed together.
Model: TypeAlias = Any


def _has(obj: object, name: str) -> bool:
    """``hasattr`` that looks at the class first: a TransformerBridge's ``hook_dict`` is a property
    that rebuilds the whole hook table with its aliases (~1 ms on SmolLM2) each time it is read."""
    return hasattr(type(obj), name) or hasattr(obj, name)


def is_model(obj: object) -> bool:
    """True for a TransformerBridge or a HookedTransformer (any ``HookedRootModule`` with hooks)."""
    return _has(obj, "hook_dict") and _has(obj, "run_with_hooks") and _has(obj, "cfg")


def is_bridge(model: Model) -> bool:
    """True for a TL 4.x ``TransformerBridge``, False for a TL 3.x ``HookedTransformer``."""
    return hasattr(model, "original_model") and hasattr(model, "hook_aliases")
