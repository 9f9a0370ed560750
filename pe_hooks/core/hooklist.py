"""``HookList``: the one container every pe-hooks intervention returns.

A ``HookList`` *is* a ``list`` of TransformerLens ``(hook_name, fn)`` pairs, so it can be passed
anywhere TransformerLens takes forward hooks::

    model.run_with_hooks(tokens, fwd_hooks=zero(model))
    with model.hooks(fwd_hooks=zero(model) + erase.hooks(model)): ...
    model.run_with_cache(tokens, names_filter=..., )  # inside a ``with hooks.applied(model)``
    for name, fn in zero(model): model.add_hook(name, fn)

``a + b`` composes (hooks on the same point run in order: ``a``'s first). ``applied(model)``
attaches them for a ``with`` block and always removes them, also when the block raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, SupportsIndex, overload

import torch

from pe_hooks.core.errors import HookListError, HookPointError, ModelMismatchError
from pe_hooks.core.types import HookFn, Model
from pe_hooks.core.validate import check_model


class HookList(list[tuple[str, HookFn]]):
    """A list of ``(hook_name, fn)`` pairs with a label, ``+`` composition and a context manager.

    Attributes:
        label: a readable description (``"zero(rotary, layers=all)"``), joined by ``+``.
        basis: the orthonormal ``[k, d]`` directions a ``project_out`` removes (``None`` for
            every other intervention, and after composition with ``+``).
    """

    def __init__(
        self, pairs: Iterable[tuple[str, HookFn]] = (), label: str = "hooks", basis: torch.Tensor | None = None
    ) -> None:
        super().__init__(_as_pairs(pairs))
        self.label = label
        self.basis = basis

    @overload
    def __getitem__(self, i: SupportsIndex) -> tuple[str, HookFn]: ...
    @overload
    def __getitem__(self, i: slice) -> HookList: ...
    def __getitem__(self, i: SupportsIndex | slice) -> tuple[str, HookFn] | HookList:
        if isinstance(i, slice):
            return HookList(super().__getitem__(i), label=self.label)
        return super().__getitem__(i)

    def __add__(self, other: Sequence[tuple[str, HookFn]]) -> HookList:  # type: ignore[override]
        _check_pairs(other)
        other_label = getattr(other, "label", "hooks")
        return HookList([*self, *other], label=f"{self.label} + {other_label}")

    def __radd__(self, other: Sequence[tuple[str, HookFn]]) -> HookList:
        if isinstance(other, int) and other == 0:  # sum([...]) support
            return HookList(self, label=self.label)
        _check_pairs(other)
        other_label = getattr(other, "label", "hooks")
        return HookList([*other, *self], label=f"{other_label} + {self.label}")

    @property
    def names(self) -> list[str]:
        """Hook-point names, in order (a name appears once per pair)."""
        return [name for name, _ in self]

    def __repr__(self) -> str:
        names = self.names
        if not names:
            return f"HookList({self.label!r}, empty)"
        uniq = list(dict.fromkeys(names))
        shown = ", ".join(uniq[:3]) + (f", ... ({len(uniq)} points)" if len(uniq) > 3 else "")
        return f"HookList({self.label!r}: {len(self)} hooks on {shown})"

    @contextmanager
    def applied(self, model: Model) -> Iterator[Model]:
        """Attach to ``model`` for a ``with`` block; always detached on exit."""
        with apply_hooks(model, self):
            yield model


def _is_pair(p: object) -> bool:
    return isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) and callable(p[1])


def _check_pairs(other: object, what: str = "add to a HookList") -> None:
    ok = isinstance(other, (list, tuple)) and all(_is_pair(p) for p in other)
    if not ok:
        bad = next((p for p in other if not _is_pair(p)), None) if isinstance(other, (list, tuple)) else other
        raise HookListError(
            f"can only {what} a HookList or a list of (hook_name, fn) pairs (a string and a callable), "
            f"not {type(other).__name__}" + (f" holding {bad!r}" if bad is not other else "")
            + "; build hooks with pe_hooks.zero/remove/replace/project_out or pass [(name, fn), ...]"
        )


def _as_pairs(pairs: Iterable[tuple[str, HookFn]]) -> list[tuple[str, HookFn]]:
    """``pairs`` as a list of ``(name, fn)`` tuples, or ``HookListError``."""
    if isinstance(pairs, HookList):
        return list(pairs)
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        _check_pairs(pairs, "make")
    out = list(pairs)
    _check_pairs(out, "make")
    return [(name, fn) for name, fn in out]


def bind_to_model(hooks: HookList, model: Model) -> HookList:
    """The same hooks, each refusing to run on a hook point of another model.

    A verb's hooks close over the model's own tensors (W_pos, rotary tables...): run on a second
    model of the same shape they would silently use the first model's weights. Each bound hook
    checks that the hook point it runs on is the one of ``model`` it was built for, and raises
    ``ModelMismatchError`` otherwise (an identity check, no cost on the forward).
    """
    points = model.hook_dict
    pairs: list[tuple[str, HookFn]] = []
    for name, fn in hooks:
        expected = points.get(name)
        pairs.append((name, fn if expected is None else _bound(fn, expected, name, hooks.label)))
    return HookList(pairs, label=hooks.label, basis=hooks.basis)


def _bound(fn: HookFn, expected: Any, name: str, label: str) -> HookFn:
    def bound(tensor: torch.Tensor, hook: Any) -> torch.Tensor | None:
        # TransformerLens' compatibility mode passes an alias wrapper around the same hook point
        if hook is not expected and getattr(hook, "_target", None) is not expected:
            raise ModelMismatchError(
                f"{label} was built from another model instance than the one running it (at {name}): its hooks "
                "hold that model's positional tensors. Build the hooks from the model you run, e.g. "
                "pe_hooks.replace(model, ...) with that model"
            )
        return fn(tensor, hook=hook)

    bound.__wrapped__ = fn  # type: ignore[attr-defined]
    return bound


@contextmanager
def apply_hooks(model: Model, *hook_lists: Sequence[tuple[str, HookFn]]) -> Iterator[Model]:
    """Attach several hook lists at once; removes exactly these hooks on exit, even on error.

    Unlike ``model.reset_hooks()``, hooks the user attached before are left in place.
    """
    check_model(model, "applying hooks")
    for hooks in hook_lists:
        _check_pairs(hooks, "apply")
    added: list[tuple[Any, Any]] = []  # (hook point, LensHandle)
    # a TransformerBridge rebuilds ``hook_dict`` (with its aliases) on every access (~1 ms on
    # SmolLM2): read it once, not once per hook
    points = model.hook_dict
    try:
        for hooks in hook_lists:
            for name, fn in hooks:
                hook_point = points.get(name) if isinstance(name, str) else None
                if hook_point is None:
                    raise HookPointError(
                        f"hook point '{name}' does not exist on this model; run pe_hooks.inspect(model) "
                        "to list the positional sites that fire"
                    )
                before = {id(h) for h in hook_point.fwd_hooks}
                hook_point.add_hook(fn, dir="fwd")
                added.extend((hook_point, h) for h in hook_point.fwd_hooks if id(h) not in before)
        yield model
    finally:
        for hook_point, handle in reversed(added):
            handle.hook.remove()
            hook_point.fwd_hooks = [h for h in hook_point.fwd_hooks if h is not handle]
