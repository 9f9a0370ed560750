"""Generation branches: sample continuations, collect their latents, look at them with and
without position.

``branches(model, prompt)`` samples ``n_branches`` continuations (KV cache, seeded) and collects
the residual latent of every generated token at the chosen layers. For a causal model the latent of
a token does not depend on later tokens, so one forward over the finished sequences gives exactly
the latents seen during decoding (the test suite checks it). ``analyze(...)`` builds the views
(raw, position-erased, intervened run), embeds each with UMAP and scores how much the picture is
organised by branch vs by position (``pe_hooks.probes.separation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pe_hooks.data import TokenData, stream_activations
from pe_hooks.data.tokens import positions_from_mask
from pe_hooks.errors import DataError
from pe_hooks.interventions.hooklist import HookList
from pe_hooks.probes.separation import separation_metrics
from pe_hooks.sites import inspect
from pe_hooks.types import Model

DEFAULT_PROMPTS = ("The most surprising thing about the ocean is",)


@dataclass
class BranchLatents:
    """Latents of generated tokens: ``latents[layer]`` is ``[n, d]``; one row per token."""

    latents: dict[int, np.ndarray]
    branch: np.ndarray  # [n] branch id (prompt-major: prompt p, sample s -> p * n_branches + s)
    position: np.ndarray  # [n] position in the sequence (BOS = 0)
    token: list[str]
    texts: list[str] = field(default_factory=list)
    sequences: torch.Tensor | None = None  # [branches, len] full token ids
    prompt_len: int = 0
    flagged: np.ndarray | None = None  # [n] massive-activation tokens (excluded from views)

    @classmethod
    def from_arrays(cls, x: Any, branch: Any, position: Any, layer: int = 0) -> BranchLatents:
        """Latents a user already has: ``x`` ``[n, d]``, branch ids and positions ``[n]``."""
        xa = np.asarray(x, dtype=np.float32)
        b, p = np.asarray(branch), np.asarray(position)
        if xa.ndim != 2 or len(xa) != len(b) or len(b) != len(p):
            raise DataError("x must be [n, d] with one branch id and one position per row")
        return cls({layer: xa}, b, p, [""] * len(b))


def _check_prompts(prompts: str | Sequence[str] | None) -> list[str]:
    if prompts is None:
        return list(DEFAULT_PROMPTS)
    out = [prompts] if isinstance(prompts, str) else list(prompts)
    if not out or any(not p.strip() for p in out):
        raise DataError("give at least one non-empty prompt")
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
    massive: float = 8.0,
    progress: bool = True,
) -> BranchLatents:
    """Sample ``n_branches`` continuations of each prompt and collect per-token latents.

    Args:
        layers: layers whose latents are collected (default: a middle and the last layer).
        hooks: an intervention to run during generation *and* collection (the "intervened" view).
        massive: tokens whose latent norm exceeds ``massive`` x the median norm are flagged and
            left out of the views (Sun et al. 2024: a few tokens carry huge activations and would
            dominate any embedding). BOS / prompt tokens are never included.
    """
    prompt_list = _check_prompts(prompts)
    scheme = inspect(model)
    if not scheme.causal:
        raise DataError(f"{scheme.model_name} is not a causal language model: it cannot generate branches")
    lay = scheme.check_layers([scheme.n_layers // 2, scheme.n_layers - 1] if layers is None else list(layers))
    names = [scheme.resid[site][layer] for layer in lay]
    if n_branches < 2:
        raise DataError("n_branches must be at least 2")
    tok = model.tokenizer
    rows: list[torch.Tensor] = []
    plens: list[int] = []
    for p in prompt_list:
        ids = model.to_tokens(p)[0]
        plens.append(int(ids.shape[0]))
        rows.append(ids)
    if len(set(plens)) != 1:
        # left-pad prompts of different lengths to one batch
        width = max(plens)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        rows = [torch.cat([torch.full((width - len(r),), pad, dtype=torch.long), r]) for r in rows]
    prompt_len = max(plens)
    if prompt_len + max_new_tokens > scheme.n_ctx:
        raise DataError(
            f"{prompt_len} prompt + {max_new_tokens} new tokens exceed the context ({scheme.n_ctx}); lower max_new_tokens"
        )
    batch = torch.stack(rows).repeat_interleave(n_branches, dim=0)
    mask = torch.stack([torch.cat([torch.zeros(prompt_len - n, dtype=torch.long), torch.ones(n, dtype=torch.long)]) for n in plens])
    mask = mask.repeat_interleave(n_branches, dim=0)
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        with (hooks or HookList()).applied(model), torch.no_grad():
            out = model.generate(
                batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p,
                use_past_kv_cache=True, stop_at_eos=False, verbose=False,
                attention_mask=mask if not bool(mask.all()) else None,
            )
    seqs = out if isinstance(out, torch.Tensor) else out.sequences
    full_mask = torch.cat([mask, torch.ones(seqs.shape[0], seqs.shape[1] - prompt_len, dtype=torch.long)], 1)
    td = TokenData(seqs, full_mask.bool(), positions_from_mask(full_mask.bool()))
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for b in stream_activations(model, td, names, batch_size=16, hooks=hooks, progress=progress, desc="latents"):
        for n in names:
            acts[n].append(b.acts[n][:, prompt_len:])
    gen_pos = td.positions[:, prompt_len:]
    n_seq, n_new = gen_pos.shape
    branch = np.repeat(np.arange(n_seq), n_new)
    position = gen_pos.reshape(-1).numpy()
    latents = {layer: torch.cat(acts[n]).reshape(n_seq * n_new, -1).numpy() for layer, n in zip(lay, names)}
    norms = np.stack([np.linalg.norm(v, axis=1) for v in latents.values()]).max(0)
    flagged = norms > massive * np.median(norms)
    texts = [tok.decode(s[prompt_len:]) for s in seqs]
    tokens = [tok.decode([int(t)]) for s in seqs for t in s[prompt_len:]]
    return BranchLatents(latents, branch, position, tokens, texts, seqs, prompt_len, flagged)


@dataclass
class BranchAnalysis:
    """Views of one layer's latents, their 2-D embeddings and separation metrics."""

    layer: int
    views: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # name -> (x, branch, position)
    embeddings: dict[str, np.ndarray]
    rows: list[dict[str, Any]]

    def table(self) -> str:
        from pe_hooks.probes.separation import metrics_table

        return metrics_table(self.rows)[1]


def umap_embed(x: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """Seeded 2-D UMAP of standardised latents."""
    import umap
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(x)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, random_state=seed)
    return np.asarray(reducer.fit_transform(z))


def analyze(
    views: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    layer: int = 0,
    embed: bool = True,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    k: int = 10,
    progress: bool = True,
) -> BranchAnalysis:
    """UMAP + metrics (original and UMAP space) for each view ``name -> (x, branch, position)``."""
    rows: list[dict[str, Any]] = []
    embeddings: dict[str, np.ndarray] = {}
    for name, (x, b, p) in tqdm(views.items(), desc=f"layer {layer}: views", disable=not progress):
        for metric, value in separation_metrics(x, b, p, k=k, seed=seed).items():
            rows.append({"layer": layer, "view": name, "space": "original", "metric": metric, "value": value})
        if embed:
            e = umap_embed(x, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
            embeddings[name] = e
            for metric, value in separation_metrics(e, b, p, k=k, seed=seed, standardize=False).items():
                rows.append({"layer": layer, "view": name, "space": "umap", "metric": metric, "value": value})
    return BranchAnalysis(layer, views, embeddings, rows)


def keep_mask(lat: BranchLatents) -> np.ndarray:
    """Rows used in views: not flagged as massive activations, position > 0."""
    keep = lat.position > 0
    if lat.flagged is not None:
        keep &= ~lat.flagged
    return keep
