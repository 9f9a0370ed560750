"""One forward over finished token sequences -> per-token latents at the chosen layers, with the
massive-activation flags and (``layers="auto"``) the layer choice: the part of ``branches`` that
sampled continuations (``pe_hooks.branching.generate``) and given texts
(``pe_hooks.branching.texts``) share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pe_hooks.branching.latents import flag_massive
from pe_hooks.branching.layer_choice import choose_layers, layer_scores
from pe_hooks.core.errors import ArgumentError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.data import TokenData, stream_activations
from pe_hooks.sites.inspect import inspect

#: The layer name of the final residual stream (``blocks.{n-1}.hook_resid_post``, whatever the site):
#: layer index ``n_layers``, as in ``pe-hooks sweep`` (reports and file names say ``n_layers``).
FINAL = "final"
LAYER_NAMES = ("auto", FINAL)


def _named(v: object, name: str) -> bool:
    return isinstance(v, str) and v.strip().lower() == name


def parse_layers(layers: str | Sequence[int | str] | None) -> tuple[list[int | str], bool]:
    """``(explicit layers, whether "auto" was asked for)``; ``"final"`` stays a name until
    ``resolve_layers`` (it needs the model)."""
    if layers is None or _named(layers, "auto"):
        return [], True
    if isinstance(layers, str):
        layers = [layers]
    items = list(layers)
    auto = any(_named(v, "auto") for v in items)
    rest: list[int | str] = [FINAL if _named(v, FINAL) else v for v in items if not _named(v, "auto")]
    if any(isinstance(v, str) and v != FINAL for v in rest):
        raise ArgumentError(f'layers may hold layer indices, "auto" and "final" only, got {items!r}; pass integers, '
                            'e.g. [0, 5], "auto", or "final" (the final residual stream)')
    if not auto and not rest:
        raise ArgumentError('layers=[] names no layer; give at least one layer, "final", or layers="auto"')
    return [v if isinstance(v, str) else int(v) for v in rest], auto


def resolve_layers(model: Model, layers: Sequence[int | str]) -> list[int]:
    """Layer indices: negative ones count from the end (``-1`` = the last block's input), and
    ``"final"`` (or ``n_layers``, as in ``pe-hooks sweep``) is the final residual stream, layer
    ``n_layers``; a layer the model lacks raises ``RangeError``, a repeated one ``ArgumentError``."""
    scheme = inspect(model)
    n = scheme.n_layers
    final = [i for i, v in enumerate(layers) if _named(v, FINAL) or (not isinstance(v, (str, bool)) and v == n)]
    rest = [v for i, v in enumerate(layers) if i not in final]
    if any(isinstance(v, str) for v in rest):
        parse_layers(rest)  # names the bad value
    checked = iter(scheme.check_layers(rest) if rest else [])
    out = [n if i in final else next(checked) for i in range(len(layers))]
    if len(set(out)) != len(out):
        raise ArgumentError(f"layers {list(layers)} name a layer twice (\"final\" is layer {n} of {scheme.model_name}); "
                            "give each layer once")
    return out


def layer_hook(model: Model, layer: int, site: str = "resid_pre") -> str:
    """The hook point of ``layer`` at ``site``; layer ``n_layers`` is the final residual stream
    (``blocks.{n-1}.hook_resid_post``) at any site."""
    scheme = inspect(model)
    scheme.resid_hook(0, site)  # a site the model lacks fails here, naming the ones it has
    if layer == scheme.n_layers:
        return scheme.resid["resid_post"][-1]
    return scheme.resid_hook(layer, site)


def layers_to_collect(model: Model, layers: str | Sequence[int | str] | None) -> tuple[list[int], list[int], bool]:
    """``(layers to collect, explicit layers, auto)``: every layer with ``"auto"`` (the explicit ones
    checked first, and added after the blocks' inputs), indices resolved (``resolve_layers``)."""
    scheme = inspect(model)
    asked, auto = parse_layers(layers)
    explicit = resolve_layers(model, asked) if asked else []
    lay = list(dict.fromkeys(list(range(scheme.n_layers)) + explicit)) if auto else explicit
    return lay, explicit, auto


@dataclass
class Collected:
    """Per-token latents (``latents[layer]`` ``[n, d]``), massive flags, and with ``"auto"`` the
    scores of every layer and the chosen ones."""

    latents: dict[int, np.ndarray]
    flagged: dict[int, np.ndarray]
    layer_scores: pd.DataFrame | None
    auto_layers: list[int]


def collect_latents(
    model: Model,
    data: TokenData,
    select: torch.Tensor,
    layers: str | Sequence[int | str] | None,
    *,
    site: str = "resid_pre",
    hooks: HookList | None = None,
    branch: np.ndarray,
    position: np.ndarray,
    prompt: np.ndarray,
    auto_layers: int = 1,
    massive: float | None = 8.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> Collected:
    """The latents of the tokens ``select`` (``[n_seq, seq]`` bool) marks, row-major (sequence by
    sequence, then position), at ``layers`` (see ``pe_hooks.branching.branches``); ``branch``,
    ``position``, ``prompt`` label those tokens (the ``"auto"`` choice scores them)."""
    scheme = inspect(model)
    lay, explicit, auto = layers_to_collect(model, layers)
    names = [layer_hook(model, layer, site) for layer in lay]
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for b in stream_activations(model, data, names, batch_size=batch_size, hooks=hooks, progress=progress, desc="latents"):
        rows = select[b.index]
        for n in names:
            acts[n].append(b.acts[n][rows])
    latents = {layer: torch.cat(acts.pop(n)).numpy() for layer, n in zip(lay, names)}
    flagged = {layer: flag_massive(v, massive) for layer, v in latents.items()}
    scores, chosen = None, []
    if auto:
        blocks = {layer: v for layer, v in latents.items() if layer < scheme.n_layers}  # auto scores the blocks' inputs
        keep = {layer: (position > 0) & ~flagged[layer] for layer in blocks}
        scores = layer_scores(blocks, keep, branch, position, prompt, seed=seed)
        chosen = choose_layers(scores, n=auto_layers)
        kept = sorted(set(chosen) | set(explicit))
        latents = {layer: latents[layer] for layer in kept}
        flagged = {layer: flagged[layer] for layer in kept}
    return Collected(latents, flagged, scores, chosen)
