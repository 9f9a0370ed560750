"""Generation branches: sample continuations, collect their latents, look at them with and
without position.

``branches(model, prompts)`` samples ``n_branches`` continuations of every prompt (KV cache,
seeded) and collects the residual latent of every generated token at the chosen layers. For a
causal model the latent of a token does not depend on later tokens, so one forward over the
finished sequences gives exactly the latents computed while decoding (the test suite checks it
against latents captured inside the cached decoding loop).

Views of one layer's latents (``make_views``):

- ``raw``: the latents as they are;
- ``erased``: through a position eraser fitted on *other* text (``pe_hooks.erasers.fit_eraser``
  on the reference corpus; any object with ``.transform(x, layer=, positions=)`` is accepted);
- ``erased (branches, out-of-sample)``: through erasers fitted on the branches themselves,
  cross-fitted by branch (``erase_crossfit``: each group of branches is erased by an eraser that
  never saw it);
- ``intervened``: new branches generated *and* read under an intervention (``zero``/``remove``/
  ``replace``);
- ``early``: the same tokens at an early layer.

``analyze(views)`` embeds each view with a seeded UMAP and scores, in the original space and in
UMAP space, how much the picture is organised by branch vs by position
(``pe_hooks.probes.separation``).
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from inspect import signature as _signature
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pe_hooks.core.atomic import atomic_write_bytes, write_artefact
from pe_hooks.core.errors import ArgumentError, DataError, HookPointError, UpstreamWarning
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_bool, check_int, check_number
from pe_hooks.data import TokenData, stream_activations
from pe_hooks.data.tokens import positions_from_mask
from pe_hooks.erasers import fit_on_arrays
from pe_hooks.models.kv_check import check_kv_cache, require_kv_cache
from pe_hooks.probes.separation import chance_levels, metrics_frame, separation_metrics, shuffled_control
from pe_hooks.sites.inspect import inspect

#: Built-in prompts (no download): different topics, so "regardless of content" can be tested.
DEFAULT_PROMPTS = (
    "The most surprising thing about the ocean is",
    "To fix a slow Python program, the first step is",
)

View = tuple[np.ndarray, np.ndarray, np.ndarray]  # (x [n, d], branch [n], position [n])


class Eraser(Protocol):
    """Anything that erases: ``PositionEraser``, or ``fit_on_arrays(...)``'s result."""

    def transform(self, x: Any, *, positions: Any = None) -> Any: ...


@dataclass
class BranchLatents:
    """Latents of generated tokens, one row per token.

    Attributes:
        latents: ``latents[layer]`` is ``[n, d]``.
        branch: ``[n]`` branch id, prompt-major (prompt ``p``, sample ``s`` -> ``p * n_branches + s``).
        position: ``[n]`` position of the token as the model saw it (BOS = 0; padding not counted).
        token: ``[n]`` decoded text of each token.
        prompt: ``[n]`` index of the prompt the branch continues.
        texts: the generated continuation of each branch.
        sequences: ``[branches, len]`` full token ids (left-padded prompts + continuation).
        flagged: per layer, ``[n]`` True for massive-activation tokens (left out of the views).
    """

    latents: dict[int, np.ndarray]
    branch: np.ndarray
    position: np.ndarray
    token: list[str]
    prompt: np.ndarray | None = None
    texts: list[str] = field(default_factory=list)
    sequences: torch.Tensor | None = None
    prompt_len: int = 0
    flagged: dict[int, np.ndarray] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)

    @classmethod
    def from_arrays(
        cls, x: Any, branch: Any, position: Any, layer: int = 0, *, prompt: Any = None, massive: float | None = None
    ) -> BranchLatents:
        """Latents a user already has: ``x`` ``[n, d]``, one branch id and one position per row.

        ``massive``: flag rows whose norm exceeds ``massive`` x the median norm (as ``branches`` does).
        """
        xa = np.asarray(x, dtype=np.float32)
        b, p = np.asarray(branch), np.asarray(position)
        if xa.ndim != 2 or len(xa) != len(b) or len(b) != len(p):
            raise DataError("x must be [n, d] with one branch id and one position per row")
        if not np.isfinite(xa).all():
            raise DataError("latents contain NaN or inf; drop or fix those rows first")
        pr = None if prompt is None else np.asarray(prompt)
        flagged = {layer: _massive(xa, massive)} if massive is not None else {}
        return cls({layer: xa}, b, p, [""] * len(b), pr, flagged=flagged)

    @property
    def df(self) -> pd.DataFrame:
        """One row per collected token: branch, prompt, position, token text."""
        return pd.DataFrame({
            "branch": self.branch,
            "prompt": self.prompt if self.prompt is not None else np.zeros(len(self.branch), dtype=int),
            "position": self.position,
            "token": self.token,
        })

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write the data: ``tokens.csv`` (``df``), ``latents.npz`` (one array per layer, and the
        massive-activation flags) and ``branches.json`` (prompts and generated texts)."""
        out = Path(folder)
        arrays = {f"layer{k}": v for k, v in self.latents.items()}
        arrays.update({f"flagged{k}": v for k, v in self.flagged.items()})
        names = ("tokens.csv", "latents.npz", "branches.json")
        with write_artefact(out, "branch latents", 1, replaces=names) as tmp:  # complete or not at all
            self.df.to_csv(tmp / "tokens.csv", index=False)
            np.savez(tmp / "latents.npz", **arrays)  # type: ignore[arg-type]
            (tmp / "branches.json").write_text(
                json.dumps({"prompts": self.prompts, "texts": self.texts, "prompt_len": self.prompt_len}, indent=1)
            )
        return {"csv": out / "tokens.csv", "npz": out / "latents.npz", "json": out / "branches.json"}

    def keep(self, layer: int) -> np.ndarray:
        """Rows used in the views of ``layer``: position > 0 and not flagged as massive."""
        keep = self.position > 0
        if layer in self.flagged:
            keep &= ~self.flagged[layer]
        return np.asarray(keep)

    def view(self, layer: int) -> View:
        """``(x, branch, position)`` of ``layer`` with the excluded rows dropped."""
        if layer not in self.latents:
            raise HookPointError(f"layer {layer} was not collected; collected: {sorted(self.latents)}")
        k = self.keep(layer)
        return self.latents[layer][k], self.branch[k], self.position[k]


def _massive(x: np.ndarray, ratio: float | None) -> np.ndarray:
    """Sun et al. 2024: tokens whose latent norm is ``ratio`` x the median norm or more."""
    if ratio is None:
        return np.zeros(len(x), dtype=bool)
    norms = np.linalg.norm(x, axis=1)
    return np.asarray(norms > ratio * np.median(norms))


def _check_prompts(prompts: str | Sequence[str] | None) -> list[str]:
    if prompts is None:
        return list(DEFAULT_PROMPTS)
    if not isinstance(prompts, str) and not isinstance(prompts, Sequence):
        raise DataError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    out = [prompts] if isinstance(prompts, str) else list(prompts)
    if not out or any(not isinstance(p, str) or not p.strip() for p in out):
        raise DataError("give at least one non-empty prompt (or prompts=None for the built-in set)")
    return out


def branches(
    model: Model,
    prompts: str | Sequence[str] | None = None,
    *,
    n_branches: int = 8,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    site: str = "resid_pre",
    hooks: HookList | None = None,
    massive: float | None = 8.0,
    batch_size: int = 16,
    progress: bool = True,
    kv_cache: bool | None = None,
) -> BranchLatents:
    """Sample ``n_branches`` continuations of each prompt and collect per-token latents.

    Args:
        prompts: a prompt, a list of prompts (left-padded into one batch), or ``None`` for
            ``DEFAULT_PROMPTS``.
        layers: layers whose latents are collected (default: the middle and the last layer).
        site: residual site (``resid_pre``, ``resid_mid``, ``resid_post``).
        hooks: an intervention active during generation *and* collection (the "intervened" view).
        massive: tokens whose latent norm at a layer exceeds ``massive`` x that layer's median
            norm are flagged there and left out of the views (Sun et al. 2024: a few tokens carry
            huge activations and would dominate any embedding); ``None`` flags nothing. BOS and
            prompt tokens are never collected.
        kv_cache: decode with the KV cache. ``None`` (default): first check, once per model, that
            cached steps equal a full forward (``pe_hooks.models.kv_check``); if they do not (a
            broken transformers / TransformerLens pair), warn naming the fix and decode without the
            cache (correct, slower). ``True``: require a correct cache (``UpstreamError`` otherwise).
            ``False``: never use the cache.

    Sampling is seeded with ``seed`` inside a forked RNG (the global torch RNG is untouched).
    """
    prompt_list = _check_prompts(prompts)
    scheme = inspect(model)
    if not scheme.causal:
        raise DataError(
            f"{scheme.model_name} is not a causal language model: it cannot generate branches; use a causal model "
            "(e.g. smollm2-135m, tiny-llama)"
        )
    check_int(n_branches, "n_branches", minimum=2, fix="branches are compared with each other (8 by default)")
    check_int(max_new_tokens, "max_new_tokens", minimum=2, fix="each branch needs at least 2 new tokens (48 by default)")
    check_number(temperature, "temperature", positive=True, fix="branches are sampled, not greedy (1.0 by default)")
    if not 0 < check_number(top_p, "top_p", fix="pass top_p in (0, 1] (0.95 by default)") <= 1:
        raise ArgumentError(f"top_p must be in (0, 1], got {top_p!r}; pass top_p in (0, 1] (0.95 by default)")
    check_int(seed, "seed")
    check_int(batch_size, "batch_size", minimum=1)
    if massive is not None:
        check_number(massive, "massive", positive=True, fix="pass a ratio such as 8.0, or None to flag nothing")
    if kv_cache is not None:
        check_bool(kv_cache, "kv_cache")
    lay = scheme.check_layers(sorted({scheme.n_layers // 2, scheme.n_layers - 1}) if layers is None else layers)
    lay = list(dict.fromkeys(lay))
    names = [scheme.resid_hook(layer, site) for layer in lay]
    tok = model.tokenizer
    rows = [model.to_tokens(p)[0].cpu() for p in prompt_list]
    plens = [int(r.shape[0]) for r in rows]
    prompt_len = max(plens)
    if prompt_len + max_new_tokens > scheme.n_ctx:
        raise DataError(
            f"{prompt_len} prompt tokens + {max_new_tokens} new tokens exceed the context of "
            f"{scheme.model_name} ({scheme.n_ctx}); lower max_new_tokens or shorten the prompt"
        )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = [torch.cat([torch.full((prompt_len - len(r),), pad, dtype=torch.long), r]) for r in rows]
    batch = torch.stack(rows).repeat_interleave(n_branches, dim=0)
    mask = torch.stack([torch.arange(prompt_len) >= prompt_len - n for n in plens]).long()
    mask = mask.repeat_interleave(n_branches, dim=0)
    device = getattr(model.cfg, "device", None) or "cpu"
    use_cache = _decide_kv_cache(model, kv_cache)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with (hooks or HookList()).applied(model), torch.no_grad():
            out = model.generate(
                batch.to(device), max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                top_p=top_p, use_past_kv_cache=use_cache, stop_at_eos=False, verbose=progress,
                attention_mask=None if bool(mask.all()) else mask.to(device),
            )
    seqs = (out if isinstance(out, torch.Tensor) else out.sequences).cpu()
    n_seq, n_new = seqs.shape[0], seqs.shape[1] - prompt_len
    full_mask = torch.cat([mask, torch.ones(n_seq, n_new, dtype=torch.long)], 1).bool()
    td = TokenData(seqs, full_mask, positions_from_mask(full_mask))
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for b in stream_activations(model, td, names, batch_size=batch_size, hooks=hooks, progress=progress, desc="latents"):
        for n in names:
            acts[n].append(b.acts[n][:, prompt_len:])
    latents = {layer: torch.cat(acts[n]).reshape(n_seq * n_new, -1).numpy() for layer, n in zip(lay, names)}
    return BranchLatents(
        latents=latents,
        branch=np.repeat(np.arange(n_seq), n_new),
        position=td.positions[:, prompt_len:].reshape(-1).numpy(),
        token=[tok.decode([int(t)]) for s in seqs for t in s[prompt_len:]],
        prompt=np.repeat(np.arange(len(prompt_list)), n_branches * n_new),
        texts=[tok.decode(s[prompt_len:]) for s in seqs],
        sequences=seqs,
        prompt_len=prompt_len,
        flagged={layer: _massive(v, massive) for layer, v in latents.items()},
        prompts=prompt_list,
    )


def _decide_kv_cache(model: Model, kv_cache: bool | None) -> bool:
    """Whether to decode with the KV cache (see ``branches``' ``kv_cache``)."""
    if kv_cache is False:
        return False
    if kv_cache is True:
        require_kv_cache(model)
        return True
    check = check_kv_cache(model)
    if not check.ok:
        warnings.warn(check.message() + " Decoding without the cache for now.", UpstreamWarning, stacklevel=3)
    return check.ok


# ---------------------------------------------------------------------------------- views


def leace_on_arrays(x: np.ndarray, position: np.ndarray) -> Eraser:
    """The default eraser fitted on branches: LEACE on 4 Fourier features of position."""
    return fit_on_arrays(x, position, method="leace", n_freqs=4, exempt_first=False)


def erase_crossfit(
    x: np.ndarray,
    branch: np.ndarray,
    position: np.ndarray,
    *,
    fit: Callable[[np.ndarray, np.ndarray], Eraser] = leace_on_arrays,
    n_folds: int = 4,
) -> np.ndarray:
    """Erase position with erasers fitted on the branches themselves, out of sample.

    Branches are split into ``n_folds`` groups; the tokens of each group are erased by
    ``fit(x_rest, position_rest)`` fitted on the other groups only, so no token is erased by an
    eraser that saw it (an in-sample eraser would also remove the noise of its own fit).
    """
    ids = np.unique(branch)
    n_folds = min(n_folds, len(ids))
    if n_folds < 2:
        raise DataError("cross-fitting needs at least two branches")
    out = np.empty_like(np.asarray(x, dtype=np.float32))
    for f in range(n_folds):
        held = np.isin(branch, ids[f::n_folds])
        er = fit(x[~held], position[~held])
        out[held] = np.asarray(er.transform(x[held], positions=position[held]))
    return out


def make_views(
    lat: BranchLatents,
    layer: int,
    *,
    eraser: Eraser | None = None,
    eraser_name: str = "erased",
    crossfit: bool | Callable[[np.ndarray, np.ndarray], Eraser] = False,
    intervened: BranchLatents | None = None,
    intervened_name: str = "intervened",
    early: int | None = None,
) -> dict[str, View]:
    """The views of one layer (see the module docstring); ``raw`` always comes first.

    ``eraser.transform`` is called as ``transform(x, layer=layer, positions=p)`` (a
    ``PositionEraser``), or ``transform(x, positions=p)`` if it has no ``layer`` argument.
    """
    x, b, p = lat.view(layer)
    views: dict[str, View] = {"raw": (x, b, p)}
    if eraser is not None:
        transform: Any = eraser.transform
        takes_layer = "layer" in _signature(transform).parameters
        xe = transform(x, layer=layer, positions=p) if takes_layer else transform(x, positions=p)
        views[eraser_name] = (np.asarray(xe), b, p)
    if crossfit:
        fit = crossfit if callable(crossfit) else leace_on_arrays
        views["erased (branches, out-of-sample)"] = (erase_crossfit(x, b, p, fit=fit), b, p)
    if intervened is not None:
        views[intervened_name] = intervened.view(layer)
    if early is not None:
        views[f"early (layer {early})"] = lat.view(early)
    return views


# ---------------------------------------------------------------------------------- analysis


@dataclass
class BranchAnalysis:
    """Views of one layer's latents, their 2-D embeddings and separation metrics (tidy rows)."""

    layer: int
    views: dict[str, View]
    embeddings: dict[str, np.ndarray]
    rows: list[dict[str, Any]]

    @property
    def df(self) -> pd.DataFrame:
        """The metrics as a tidy frame (layer, view, space, metric, value)."""
        return metrics_frame(self.rows)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``metrics-layer{L}.csv`` and the 2-D embeddings (``embeddings-layer{L}.npz``).

        Several layers' analyses may share a folder, so each file is written atomically (a
        temporary file renamed into place): a file is complete or absent, never truncated.
        """
        out = Path(folder)
        paths = {"csv": out / f"metrics-layer{self.layer}.csv", "npz": out / f"embeddings-layer{self.layer}.npz"}
        buf = io.BytesIO()
        np.savez(buf, **self.embeddings)  # type: ignore[arg-type]
        atomic_write_bytes(paths["npz"], buf.getvalue())
        atomic_write_bytes(paths["csv"], self.df.to_csv(index=False).encode())
        return paths


def umap_embed(
    x: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean"
) -> np.ndarray:
    """Seeded 2-D UMAP of standardised latents (``random_state`` makes it deterministic)."""
    import umap
    from sklearn.preprocessing import StandardScaler

    if len(x) < 4:
        raise DataError(f"UMAP needs at least 4 points, got {len(x)}")
    z = StandardScaler().fit_transform(x)
    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, metric=metric, random_state=seed
    )
    return np.asarray(reducer.fit_transform(z))


def analyze(
    views: dict[str, View],
    *,
    layer: int = 0,
    embed: bool = True,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    k: int = 10,
    window: int = 2,
    control: bool = True,
    progress: bool = True,
) -> BranchAnalysis:
    """UMAP + metrics (original and UMAP space) for each view ``name -> (x, branch, position)``.

    With ``control``, a ``shuffled`` row scores the first view with its (branch, position) labels
    permuted jointly across tokens (what each metric reads when nothing is organised), and a
    ``chance`` row gives the analytic kNN chance levels of those labels.
    """
    rows: list[dict[str, Any]] = []
    embeddings: dict[str, np.ndarray] = {}

    def add(view: str, space: str, values: dict[str, float]) -> None:
        rows.extend({"layer": layer, "view": view, "space": space, "metric": m, "value": v} for m, v in values.items())

    for name, (x, b, p) in tqdm(views.items(), desc=f"layer {layer}: views", disable=not progress, leave=False):
        add(name, "original", separation_metrics(x, b, p, k=k, window=window, seed=seed))
        if embed:
            e = umap_embed(x, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
            embeddings[name] = e
            add(name, "umap", separation_metrics(e, b, p, k=k, window=window, seed=seed, standardize=False))
    if control and views:
        x, b, p = next(iter(views.values()))
        add("shuffled", "original", shuffled_control(x, b, p, k=k, window=window, seed=seed))
        add("chance", "analytic", chance_levels(b, p, window=window))
    return BranchAnalysis(layer, views, embeddings, rows)


def keep_mask(lat: BranchLatents, layer: int | None = None) -> np.ndarray:
    """Rows used in views (position > 0, not massive at ``layer``; at any layer if ``None``)."""
    if layer is not None:
        return lat.keep(layer)
    keep = lat.position > 0
    for f in lat.flagged.values():
        keep &= ~f
    return np.asarray(keep)
