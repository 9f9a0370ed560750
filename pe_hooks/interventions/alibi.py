"""ALiBi (BLOOM): site ``"alibi"`` at ``blocks.i.attn.hook_attn_scores``.

ALiBi adds a per-head linear bias to the pre-softmax scores; there is no bias-only hook, so the
bias is edited inside the scores. Its form depends on the backend (``sites.alibi_form``):

- TL 4 bridge over HF BLOOM: ``+ m_h * t_k`` (key position ``t_k``; ``m_h`` the head's slope), which
  equals the textbook ``m_h * (t_k - t_q)`` up to a per-row constant;
- TL 3 ``HookedTransformer``: ``+ m_h * (j - i)`` by row/column index.

Real positions come from the mask that is already in the scores: masked entries hold the dtype's
minimum, so ``t_k = cumsum(valid) - 1`` over the last query row (HF's own convention for left
padding) and a query's position is that of its own key column (the last ``q`` columns).

- ``zero``: subtract the ALiBi term exactly (no positional bias at all).
- ``remove`` (mean-ablation): replace each query's bias by its mean over the keys it may attend
  to. That is a per-row constant and softmax is shift-invariant, so **for ALiBi ``remove`` is
  exactly ``zero``** in the attention pattern (the test suite checks it); it is offered so that
  sweeps can use the same verbs on every scheme.
- ``replace(f)``: bias ``m_h * (f(t_k) - f(t_q))``.
- ``heads=`` / ``layers=``: act on those heads / layers only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.interventions.base import SiteOptions, Target, fmt_layers, not_supported
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.sites.padding import positions_from_scores
from pe_hooks.sites.registry import AlibiForm, Scheme
from pe_hooks.sites.scheme import PositionalScheme


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The ALiBi slopes of Press et al. (2022) as BLOOM computes them: a geometric sequence
    ``2^(-8/n), 2^(-16/n), ...`` for the nearest power of two ``n <= n_heads``, interleaved with the
    next power's odd terms when ``n_heads`` is not a power of two."""
    closest = 2 ** math.floor(math.log2(n_heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != n_heads:
        extra = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        n_rem = min(closest, n_heads - closest)
        slopes += [extra ** (2 * i + 1) for i in range(n_rem)]
    return torch.tensor(slopes, dtype=torch.float32)


class AlibiScores:
    """Site ``"alibi"``: the ALiBi term inside ``attn.hook_attn_scores``."""

    name: ClassVar[str] = "alibi"
    description: ClassVar[str] = "ALiBi bias inside the pre-softmax attention scores"
    accepts: ClassVar[dict[str, tuple[str, ...]]] = {}

    def _build(self, model: Model, sites: PositionalScheme, target: Target, verb: str, new_bias: Callable[..., torch.Tensor]) -> HookList:
        if sites.scheme is not Scheme.ALIBI:
            raise not_supported(self.name, verb, sites)
        if target.exempt_first:
            raise SchemeError("exempt_first does not apply to ALiBi (the bias is between pairs of positions)")
        measured = sites.family.alibi_slopes  # as the scores hook holds them (sites.alibi_bias)
        slopes = torch.tensor(measured, dtype=torch.float32) if measured else alibi_slopes(sites.n_heads)
        heads = torch.zeros(sites.n_heads, dtype=torch.bool)
        heads[list(target.heads) if target.heads is not None else slice(None)] = True
        relative = sites.alibi_form is AlibiForm.RELATIVE

        def fn(scores: torch.Tensor, hook: Any) -> torch.Tensor:
            valid, kpos, qpos = positions_from_scores(scores)
            m = slopes.to(scores.device)[None, :, None, None]
            if relative:  # TL 3: by row/column index
                k_idx = torch.arange(scores.shape[-1], device=scores.device, dtype=torch.float32)
                q_idx = k_idx[-scores.shape[2] :]
                old = m * (k_idx[None, None, None, :] - q_idx[None, None, :, None])
            else:
                old = m * kpos[:, None, None, :]
            new = new_bias(m, kpos[:, None, None, :], qpos[:, None, :, None], valid[:, None])
            sel = heads.to(scores.device)[None, :, None, None] & valid[:, None]
            out = torch.where(sel, scores - old.to(scores.dtype) + new.to(scores.dtype), scores)
            return out

        pairs: list[tuple[str, HookFn]] = [(sites.attn_scores[i], fn) for i in target.layers]
        label = f"{verb}(alibi, layers={fmt_layers(target.layers, sites)}, heads={target.heads or 'all'})"
        return HookList(pairs, label=label)

    def zero(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        return self._build(model, sites, target, "zero", lambda m, k, q, v: torch.zeros(()))

    def remove(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:

        def mean_bias(m: torch.Tensor, k: torch.Tensor, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            bias = m * (k - q) * v
            return bias.sum(-1, keepdim=True) / v.sum(-1, keepdim=True).clamp(min=1)

        return self._build(model, sites, target, "remove", mean_bias)

    def replace(
        self, model: Model, sites: PositionalScheme, target: Target, positions: PositionMap, options: SiteOptions
    ) -> HookList:

        def mapped(m: torch.Tensor, k: torch.Tensor, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            fk = positions(k.reshape(k.shape[0], -1).long()).reshape(k.shape)
            fq = positions(q.reshape(q.shape[0], -1).long()).reshape(q.shape)
            return m * (fk - fq)

        hooks = self._build(model, sites, target, "replace", mapped)
        hooks.label = hooks.label.replace("replace(alibi", f"replace(alibi, {positions.name}")
        return hooks

    def project_out(
        self, model: Model, sites: PositionalScheme, target: Target, basis: torch.Tensor | None, k: int | None
    ) -> HookList:
        raise not_supported(
            self.name, "project_out", sites,
            "ALiBi is a bias on attention scores, not a vector: use zero/remove/replace, or project a "
            "fitted residual subspace out with site='resid_pre' or pe_hooks.fit_eraser(model, data).",
        )

