"""One forward over finished token sequences -> per-token latents at the chosen layers, with the
massive-activation flags and (``layers="auto"``) the layer choice, as a ``BranchLatents``: the part
that sampled continuations (``pe_hooks.branching.generate``) and given texts
(``pe_hooks.branching.texts``) share (``trajectory_latents``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pe_hooks.branching.latents import BranchLatents, flag_massive
from pe_hooks.branching.layer_choice import choose_layers, layer_scores
from pe_hooks.core.errors import ArgumentError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.data import TokenData, stream_activations
from pe_hooks.sites.inspect import inspect


def parse_layers(layers: str | Sequence[int | str] | None) -> tuple[list[int], bool]:
    """``(explicit layers, whether "auto" was asked for)``."""
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "auto"):
        return [], True
    if isinstance(layers, str):
        raise ArgumentError(f'layers must be "auto" or a list of layer indices, got {layers!r}')
    items = list(layers)
    auto = any(isinstance(v, str) and v.strip().lower() == "auto" for v in items)
    rest = [v for v in items if not (isinstance(v, str) and v.strip().lower() == "auto")]
    if any(isinstance(v, str) for v in rest):
        raise ArgumentError(f'layers may hold layer indices and "auto" only, got {items!r}; pass integers, e.g. [0, 5], or "auto"')
    if not auto and not rest:
        raise ArgumentError('layers=[] names no layer; give at least one layer, or layers="auto"')
    return [int(v) for v in rest], auto


def layers_to_collect(model: Model, layers: str | Sequence[int | str] | None) -> tuple[list[int], list[int], bool]:
    """``(layers to collect, explicit layers, auto)``: every layer with ``"auto"`` (checked first)."""
    sites = inspect(model)
    explicit, auto = parse_layers(layers)
    lay = list(range(sites.n_layers)) if auto else list(dict.fromkeys(sites.check_layers(explicit)))
    if auto and explicit:
        sites.check_layers(explicit)
    return lay, explicit, auto


def check_collectable(model: Model, layers: str | Sequence[int | str] | None, site: str) -> None:
    """Bad layers and sites fail before any work (sampling, tokenising)."""
    lay, _, _ = layers_to_collect(model, layers)
    inspect(model).resid_hook(lay[0], site)


def trajectory_latents(
    model: Model,
    data: TokenData,
    select: torch.Tensor,
    group: np.ndarray,
    layers: str | Sequence[int | str] | None,
    *,
    texts: list[str],
    prompts: list[str],
    prompt_len: int,
    site: str = "resid_pre",
    hooks: HookList | None = None,
    auto_layers: int = 1,
    massive: float | None = 8.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> BranchLatents:
    """The ``BranchLatents`` of the tokens ``select`` (``[n_seq, seq]`` bool) marks, row-major
    (sequence by sequence, then position), one trajectory ("branch") per sequence of ``data``, at
    ``layers`` (see ``pe_hooks.branching.branches``; ``"auto"`` scores every layer on these tokens):
    sequence ``i`` belongs to group (prompt) ``group[i]``; ``texts``, ``prompts`` and ``prompt_len``
    are recorded as given."""
    per_row = select.sum(1).numpy()
    branch = np.repeat(np.arange(len(data)), per_row)
    position = data.positions[select].numpy()
    prompt = np.repeat(group, per_row)
    lay, explicit, auto = layers_to_collect(model, layers)
    latents = _selected_acts(model, data, select, lay, site, hooks, batch_size, progress)
    flagged = {layer: flag_massive(v, massive) for layer, v in latents.items()}
    scores, chosen = None, []
    if auto:
        keep = {layer: (position > 0) & ~f for layer, f in flagged.items()}
        scores = layer_scores(latents, keep, branch, position, prompt, seed=seed)
        chosen = choose_layers(scores, n=auto_layers)
        final = sorted(set(chosen) | set(inspect(model).check_layers(explicit) if explicit else []))
        latents = {layer: latents[layer] for layer in final}
        flagged = {layer: flagged[layer] for layer in final}
    tok = model.tokenizer
    return BranchLatents(
        latents=latents, branch=branch, position=position, token=[tok.decode([int(t)]) for t in data.tokens[select]],
        prompt=prompt, texts=texts, sequences=data.tokens, prompt_len=prompt_len, flagged=flagged, prompts=prompts,
        layer_scores=scores, auto_layers=chosen,
    )


def _selected_acts(
    model: Model, data: TokenData, select: torch.Tensor, layers: list[int], site: str, hooks: HookList | None,
    batch_size: int, progress: bool,
) -> dict[int, np.ndarray]:
    """``{layer: [n, d]}``: the residual ``site`` of each layer at the tokens ``select`` marks, in one
    forward over ``data`` (under ``hooks``)."""
    sites = inspect(model)
    names = [sites.resid_hook(layer, site) for layer in layers]
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for b in stream_activations(model, data, names, batch_size=batch_size, hooks=hooks, progress=progress, desc="latents"):
        rows = select[b.index]
        for n in names:
            acts[n].append(b.acts[n][rows])
    return {layer: torch.cat(acts.pop(n)).numpy() for layer, n in zip(layers, names)}
