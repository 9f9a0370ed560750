"""Generation branches: sample continuations and collect their latents.

``branches(model, prompts)`` samples ``n_branches`` continuations of every prompt (KV cache,
seeded) and collects the residual latent of every generated token at the chosen layers. For a
causal model the latent of a token does not depend on later tokens, so one forward over the
finished sequences gives exactly the latents computed while decoding (the test suite checks it
against latents captured inside the cached decoding loop).

With ``layers="auto"`` (the default) every layer is collected in that one forward, scored by how
much of the latents' variance a shared positional path explains on held-out prompts
(``pe_hooks.branching.layer_choice``), and the most positional layer is kept; the scores of every
layer are kept too (``BranchLatents.layer_scores``) to say why.

Views of the latents: ``pe_hooks.branching.views``; UMAP and scores:
``pe_hooks.branching.analysis`` and ``pe_hooks.branching.scores``; the whole pipeline of
``pe-hooks branches``: ``pe_hooks.branching.run``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pe_hooks.branching.collect import check_collectable, trajectory_latents
from pe_hooks.branching.latents import DEFAULT_PROMPTS, BranchLatents
from pe_hooks.core.errors import ArgumentError, DataError, UpstreamWarning
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_bool, check_int, check_number
from pe_hooks.data import TokenData
from pe_hooks.data.stream import check_finite_acts
from pe_hooks.data.tokens import positions_from_mask
from pe_hooks.models.kv_check import check_kv_cache, require_kv_cache
from pe_hooks.sites.inspect import inspect
from pe_hooks.sites.scheme import PositionalScheme


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
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int = 0,
    layers: str | Sequence[int | str] | None = "auto",
    auto_layers: int = 1,
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
        layers: layers whose latents are collected. ``"auto"`` (default; also ``None``): the
            ``auto_layers`` layer(s) where position is measurably strongest in these very latents
            (held-out positional share, ``pe_hooks.branching.layer_choice``; every layer is scored
            from the one collection forward, and the scores are returned in ``layer_scores``).
            A list of layers (negative ones count from the end) may contain ``"auto"`` as well,
            e.g. ``["auto", 0]``, and ``"final"``: the final residual stream
            (``blocks.{n-1}.hook_resid_post`` at any ``site``), layer ``n_layers`` in the results. Until it has chosen, ``"auto"`` holds every layer's latents
            (tokens x layers x d floats: 280 MB for 4 prompts x 8 branches x 128 tokens of
            SmolLM2-135M).
        auto_layers: how many layers ``"auto"`` chooses.
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
    sites = inspect(model)
    if not sites.causal:
        raise DataError(
            f"{sites.model_name} is not a causal language model: it cannot generate branches; use it to read given "
            "texts instead (run_branches(model, texts=...), pe-hooks branches --texts FILE), or generate with a "
            "causal model and read with this one (run_branches('smollm2-135m', reader=model), --reader)"
        )
    _check_sampling(n_branches, max_new_tokens, temperature, top_p, seed, batch_size, massive, kv_cache)
    check_collectable(model, layers, site)  # bad layers and sites fail before sampling
    batch, mask, prompt_len = _prompt_batch(model, sites, prompt_list, n_branches, max_new_tokens)
    use_cache = _decide_kv_cache(model, kv_cache)
    seqs = _sample(model, batch, mask, hooks, seed, progress, max_new_tokens=max_new_tokens, do_sample=True,
                   temperature=temperature, top_p=top_p, use_past_kv_cache=use_cache, stop_at_eos=False)
    full_mask = torch.cat([mask, torch.ones(seqs.shape[0], seqs.shape[1] - prompt_len, dtype=torch.long)], 1).bool()
    select = torch.zeros_like(full_mask)
    select[:, prompt_len:] = True  # the generated tokens
    group = np.repeat(np.arange(len(prompt_list)), n_branches)  # each sequence's prompt
    texts = [model.tokenizer.decode(s[prompt_len:]) for s in seqs]
    return trajectory_latents(
        model, TokenData(seqs, full_mask, positions_from_mask(full_mask)), select, group, layers, texts=texts,
        prompts=prompt_list, prompt_len=prompt_len, site=site, hooks=hooks, auto_layers=auto_layers, massive=massive,
        batch_size=batch_size, seed=seed, progress=progress,
    )


def _sample(
    model: Model, batch: torch.Tensor, mask: torch.Tensor, hooks: HookList | None, seed: int, progress: bool,
    **generate: Any,
) -> torch.Tensor:
    """The sampled sequences (prompt + continuation, on CPU), seeded inside a forked RNG (the global
    torch RNG is untouched), under ``hooks``."""
    device = getattr(model.cfg, "device", None) or "cpu"
    final = inspect(model).resid_hook(inspect(model).n_layers)

    def finite(x: torch.Tensor, hook: Any) -> None:  # else a ValueError from inside the sampler's Categorical
        check_finite_acts(x, f"{final} (the final residual) while sampling")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with ((hooks or HookList()) + [(final, finite)]).applied(model), torch.no_grad():
            out = model.generate(batch.to(device), verbose=progress,
                                 attention_mask=None if bool(mask.all()) else mask.to(device), **generate)
    return (out if isinstance(out, torch.Tensor) else out.sequences).cpu()


def _check_sampling(
    n_branches: int, max_new_tokens: int, temperature: float, top_p: float, seed: int, batch_size: int,
    massive: float | None, kv_cache: bool | None,
) -> None:
    """The sampling options of ``branches``, checked before any work."""
    check_int(n_branches, "n_branches", minimum=2, fix="branches are compared with each other (8 by default)")
    check_int(max_new_tokens, "max_new_tokens", minimum=2, fix="each branch needs at least 2 new tokens (128 by default)")
    check_number(temperature, "temperature", positive=True, fix="branches are sampled, not greedy (1.0 by default)")
    if not 0 < check_number(top_p, "top_p", fix="pass top_p in (0, 1] (0.95 by default)") <= 1:
        raise ArgumentError(f"top_p must be in (0, 1], got {top_p!r}; pass top_p in (0, 1] (0.95 by default)")
    check_int(seed, "seed")
    check_int(batch_size, "batch_size", minimum=1)
    if massive is not None:
        check_number(massive, "massive", positive=True, fix="pass a ratio such as 8.0, or None to flag nothing")
    if kv_cache is not None:
        check_bool(kv_cache, "kv_cache")


def _prompt_batch(
    model: Model, sites: PositionalScheme, prompts: list[str], n_branches: int, max_new_tokens: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(tokens, mask, prompt_len)``: every prompt left-padded to the longest, ``n_branches`` times."""
    rows = [model.to_tokens(p)[0].cpu() for p in prompts]
    plens = [int(r.shape[0]) for r in rows]
    prompt_len = max(plens)
    if prompt_len + max_new_tokens > sites.n_ctx:
        raise DataError(
            f"{prompt_len} prompt tokens + {max_new_tokens} new tokens exceed the context of "
            f"{sites.model_name} ({sites.n_ctx}); lower max_new_tokens or shorten the prompt"
        )
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = [torch.cat([torch.full((prompt_len - len(r),), pad, dtype=torch.long), r]) for r in rows]
    batch = torch.stack(rows).repeat_interleave(n_branches, dim=0)
    mask = torch.stack([torch.arange(prompt_len) >= prompt_len - n for n in plens]).long()
    return batch, mask.repeat_interleave(n_branches, dim=0), prompt_len


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

