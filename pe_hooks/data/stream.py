"""Stream activations at chosen hook points, batch by batch, without caching the whole model.

Only the requested hook points are captured (by hooks, not ``run_with_cache`` of everything),
and the forward pass stops as soon as the last of them has fired (the final residual no longer pays
for the unembedding: ~20% of a SmolLM2 forward).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from pe_hooks.core.errors import DataError, HookPointError
from pe_hooks.core.hooklist import HookList, apply_hooks
from pe_hooks.core.types import HookFn, Model
from pe_hooks.core.validate import check_int, check_model
from pe_hooks.data.tokens import TokenData, check_token_data

_LAYER = re.compile(r"^blocks\.(\d+)\.")


class _Captured(Exception):
    """Raised by the capture hook that completes a batch's captures, to end its forward early."""


@dataclass
class ActivationBatch:
    """Activations of one batch: ``acts[name]`` is ``[b, seq, d]`` float32 (detached, on CPU
    unless ``keep_device``); ``positions``/``mask`` are ``[b, seq]``; ``index`` are the rows of
    the ``TokenData`` this batch holds."""

    acts: dict[str, torch.Tensor]
    positions: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    tokens: torch.Tensor


def _stop_layer(names: Sequence[str], n_layers: int) -> int | None:
    layers = []
    for n in names:
        m = _LAYER.match(n)
        if m is None:
            return None  # a non-block hook (e.g. final ln) needs the full forward
        layers.append(int(m.group(1)))
    last = max(layers)
    return last + 1 if last + 1 < n_layers else None


def stream_activations(
    model: Model,
    data: TokenData,
    hook_names: Sequence[str],
    *,
    batch_size: int = 16,
    hooks: Sequence[tuple[str, HookFn]] | None = None,
    progress: bool = True,
    desc: str = "forward",
    keep_device: bool = False,
    check_finite: bool = True,
) -> Iterator[ActivationBatch]:
    """Yield ``ActivationBatch``es of ``hook_names`` over ``data``.

    ``hooks`` (an intervention ``HookList``) run during the same forward passes, before the
    capture hooks, so captured activations are the intervened ones.
    """
    data, hook_names = _check_stream(model, data, hook_names, batch_size)
    n_layers = int(model.cfg.n_layers)
    stop = _stop_layer(hook_names, n_layers)
    device = getattr(model.cfg, "device", None) or "cpu"
    store: dict[str, torch.Tensor] = {}

    wanted = set(hook_names)

    def capture(name: str) -> HookFn:
        def fn(t: torch.Tensor, hook: Any) -> None:
            store[name] = t.detach()
            if len(store) == len(wanted):
                raise _Captured  # everything asked for is in hand: skip the rest of the forward (and the logits)

        return fn

    capture_hooks = HookList([(n, capture(n)) for n in hook_names], label="capture")
    starts = range(0, len(data), batch_size)
    bar = tqdm(starts, desc=desc, disable=not progress, unit="batch", leave=False)
    # Hooks are attached around each batch's forward only, never across a ``yield``: while the
    # caller holds the generator (or a traceback keeps it alive), the model runs un-intervened.
    for start in bar:
        idx = torch.arange(start, min(start + batch_size, len(data)))
        toks = data.tokens[idx].to(device)
        mask = data.mask[idx]
        store.clear()
        kwargs: dict[str, Any] = {}
        if not bool(mask.all()):
            kwargs["attention_mask"] = mask.long().to(device)
        if stop is not None:
            kwargs["stop_at_layer"] = stop
        try:
            with apply_hooks(model, hooks or [], capture_hooks), torch.no_grad():
                model(toks, **kwargs)
        except _Captured:
            pass
        acts = _captured(store, hook_names, keep_device, check_finite)
        store.clear()
        yield ActivationBatch(acts, data.positions[idx], mask, idx, data.tokens[idx])


def _check_stream(
    model: Model, data: TokenData, hook_names: Sequence[str], batch_size: int
) -> tuple[TokenData, Sequence[str]]:
    """``stream_activations``' arguments, checked: the data and the hook points to capture."""
    check_int(batch_size, "batch_size", minimum=1)
    if not isinstance(data, TokenData):
        raise DataError(
            f"stream_activations takes TokenData, got {type(data).__name__}; wrap your data with "
            "pe_hooks.data.load_data(model, data)"
        )
    if len(data) == 0:
        raise DataError("no sequences to run; pass TokenData with at least one sequence")
    data = check_token_data(data)
    if isinstance(hook_names, str):  # one hook point, not its characters
        hook_names = [hook_names]
    if not list(hook_names):
        raise DataError(
            f"no hook names to capture (got {hook_names!r}); pass a list of hook points such as ['blocks.0.hook_resid_pre']"
        )
    check_model(model, "stream_activations")
    missing = [n for n in hook_names if n not in model.hook_dict]
    if missing:
        raise HookPointError(f"hook points {missing} do not exist on this model; see pe_hooks.inspect(model)")
    return data, hook_names


def _captured(
    store: dict[str, torch.Tensor], hook_names: Sequence[str], keep_device: bool, check_finite: bool
) -> dict[str, torch.Tensor]:
    """The captured activations of one batch (float32), each checked to be finite."""
    acts = {}
    for n in hook_names:
        if n not in store:
            raise HookPointError(f"hook '{n}' did not fire; it cannot be used on this model (see pe_hooks.inspect(model))")
        a = store[n].float()
        if not keep_device:
            a = a.cpu()
        if check_finite:
            check_finite_acts(a, n)
        acts[n] = a
    return acts


def check_finite_acts(x: torch.Tensor, where: str) -> None:
    """``DataError`` naming ``where`` if ``x`` holds a NaN or inf (one check for every path that
    streams or fits activations)."""
    # a sum is NaN/inf iff an element is (or it overflows float32: |sum| > 3e38), ~10x cheaper
    if not bool(torch.isfinite(x.sum(dtype=torch.float64))):
        raise DataError(f"non-finite activations (NaN/inf) at {where}; check the model dtype and inputs")
