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
    sites = inspect(model)
    n = sites.n_layers
    final = [i for i, v in enumerate(layers) if _named(v, FINAL) or (not isinstance(v, (str, bool)) and v == n)]
    rest = [v for i, v in enumerate(layers) if i not in final]
    if any(isinstance(v, str) for v in rest):
        parse_layers(rest)  # names the bad value
    checked = iter(sites.check_layers(rest) if rest else [])
    out = [n if i in final else next(checked) for i in range(len(layers))]
    if len(set(out)) != len(out):
        raise ArgumentError(f"layers {list(layers)} name a layer twice (\"final\" is layer {n} of {sites.model_name}); "
                            "give each layer once")
    return out


def layer_hook(model: Model, layer: int, site: str = "resid_pre") -> str:
    """The hook point of ``layer`` at ``site``; layer ``n_layers`` is the final residual stream
    (``blocks.{n-1}.hook_resid_post``) at any site."""
    sites = inspect(model)
    sites.resid_hook(0, site)  # a site the model lacks fails here, naming the ones it has
    if layer == sites.n_layers:
        return sites.resid["resid_post"][-1]
    return sites.resid_hook(layer, site)


def layers_to_collect(model: Model, layers: str | Sequence[int | str] | None) -> tuple[list[int], list[int], bool]:
    """``(layers to collect, explicit layers, auto)``: every layer with ``"auto"`` (the explicit ones
    checked first, and added after the blocks' inputs), indices resolved (``resolve_layers``)."""
    sites = inspect(model)
    asked, auto = parse_layers(layers)
    explicit = resolve_layers(model, asked) if asked else []
    lay = list(dict.fromkeys(list(range(sites.n_layers)) + explicit)) if auto else explicit
    return lay, explicit, auto


def check_collectable(model: Model, layers: str | Sequence[int | str] | None, site: str) -> None:
    """Bad layers and sites fail before any work (sampling, tokenising)."""
    lay, _, _ = layers_to_collect(model, layers)
    layer_hook(model, lay[0], site)


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
        n_blocks = inspect(model).n_layers
        blocks = {layer: v for layer, v in latents.items() if layer < n_blocks}  # auto scores the blocks' inputs
        keep = {layer: (position > 0) & ~flagged[layer] for layer in blocks}
        scores = layer_scores(blocks, keep, branch, position, prompt, seed=seed)
        chosen = choose_layers(scores, n=auto_layers)
        kept = sorted(set(chosen) | set(explicit))
        latents = {layer: latents[layer] for layer in kept}
        flagged = {layer: flagged[layer] for layer in kept}
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
    names = [layer_hook(model, layer, site) for layer in layers]
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for b in stream_activations(model, data, names, batch_size=batch_size, hooks=hooks, progress=progress, desc="latents"):
        rows = select[b.index]
        for n in names:
            acts[n].append(b.acts[n][rows])
    return {layer: torch.cat(acts.pop(n)).numpy() for layer, n in zip(layers, names)}
