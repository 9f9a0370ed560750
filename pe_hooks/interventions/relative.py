"""Relative position bias (T5, mT5, LongT5, SwitchTransformers): site ``"relative"``.

Each stack adds ``bias[q, k, h] = table[bucket(t_k - t_q), h]`` to its attention scores, computed
once (in the first layer) and shared by every layer; the bridge's ``hook_pos_embed`` (encoder) and
``decoder_pos_embed.hook_out`` (decoder) carry it as ``[q, k, heads]`` (``pe_hooks.sites.relative``).
Query ``i`` of a forward whose keys number ``k`` sits at ``t_q = k - q + i`` (a KV-cache step's
query is the last position); keys at ``t_k = 0..k-1``. T5 positions never depend on padding.

- ``zero``: no bias at all (``bias -> 0``).
- ``remove`` (mean-ablation): each head's bias replaced by its mean over the (query, key) pairs the
  stack attends to (the decoder: keys at or before the query). That is one constant per head, and
  softmax is shift-invariant, so **``remove`` equals ``zero`` in the attention pattern** (as for
  ALiBi; the tests check it); it is offered so that sweeps use the same verbs on every scheme.
- ``replace(f)``: the bias of the mapped positions, ``table[bucket(f(t_k) - f(t_q))]`` with the
  model's own bucketing (a fractional distance is rounded). A shift changes nothing (the bias is
  relative); ``reverse`` swaps past and future, ``scale(c)`` stretches distances.
- ``heads=``: only those heads; ``stacks=``: only the ``"encoder"`` or ``"decoder"`` bias.
  ``layers=`` does not apply (one bias per stack, shared by its layers).

LongT5's local attention computes its encoder bias over a block window (positions inside the
window, not in the sequence): ``zero`` and ``remove`` apply there, ``replace`` only to its decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.interventions.base import SiteOptions, Target, not_supported
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.sites.registry import Scheme
from pe_hooks.sites.relative import RelativeFacts, bias_table, bucket_fn
from pe_hooks.sites.scheme import PositionalScheme
from pe_hooks.sites.tables import STACKS

#: new_bias(x [q, k, h], t_q [q], t_k [k], facts, table, buckets) -> [q, k, h]
NewBias = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, RelativeFacts, torch.Tensor, Any], torch.Tensor]


class RelativeBias:
    """Site ``"relative"``: each stack's relative position bias ``[q, k, heads]``."""

    name: ClassVar[str] = "relative"
    description: ClassVar[str] = "relative position bias (T5 buckets), per stack and head"
    accepts: ClassVar[dict[str, tuple[str, ...]]] = {}

    def _build(self, model: Model, sites: PositionalScheme, target: Target, verb: str, new_bias: NewBias,
               label: str) -> HookList:
        if sites.scheme is not Scheme.RELATIVE or not sites.family.relative:
            raise not_supported(self.name, verb, sites)
        if target.exempt_first:
            raise SchemeError("exempt_first does not apply to a relative bias (it is between pairs of positions); leave it out")
        if len(target.layers) != sites.n_layers:
            raise SchemeError(
                "layers= does not apply to a relative position bias: each stack computes it once, in its first layer, "
                "and every layer adds the same bias; leave layers= out (heads= and stacks= select parts of it)"
            )
        pairs: list[tuple[str, HookFn]] = []
        for rel in sites.family.relative:
            if target.stacks is not None and STACKS[rel.hook] not in target.stacks:
                continue
            if rel.windowed and verb == "replace":
                raise SchemeError(
                    f"replace does not apply to the {STACKS[rel.hook]} bias of {sites.model_name}: it is computed over a "
                    "local block window (positions inside the window, not in the sequence); zero and remove apply, and "
                    "replace(..., stacks='decoder') edits the decoder's bias"
                )
            heads = torch.zeros(rel.n_heads, dtype=torch.bool)
            heads[list(target.heads) if target.heads is not None else slice(None)] = True
            table, buckets = bias_table(model, rel.hook), bucket_fn(model, rel.hook)

            def fn(x: torch.Tensor, hook: Any, rel: RelativeFacts = rel, heads: torch.Tensor = heads,
                   table: torch.Tensor = table, buckets: Any = buckets) -> torch.Tensor:
                q, k = int(x.shape[0]), int(x.shape[1])
                t_k = torch.arange(k, device=x.device)
                t_q = t_k[k - q :] if not rel.windowed else t_k[:q]
                new = new_bias(x, t_q, t_k, rel, table.detach().to(x.device), buckets)
                return torch.where(heads.to(x.device), new.to(x.dtype), x)

            pairs.append((rel.hook, fn))
        heads_txt = "all" if target.heads is None else ",".join(map(str, target.heads))
        stacks_txt = "all" if target.stacks is None else ",".join(target.stacks)
        return HookList(pairs, label=f"{label}, stacks={stacks_txt}, heads={heads_txt})")

    def zero(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        return self._build(model, sites, target, "zero", lambda x, q, k, r, w, b: torch.zeros_like(x), "zero(relative")

    def remove(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:

        def mean_bias(x: torch.Tensor, t_q: torch.Tensor, t_k: torch.Tensor, rel: RelativeFacts, w: torch.Tensor,
                      b: Any) -> torch.Tensor:
            used = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            if not rel.bidirectional and not rel.windowed:
                used = t_k[None, :] <= t_q[:, None]  # the decoder attends to past keys only
            mean = (x.float() * used[..., None]).sum((0, 1)) / used.sum().clamp(min=1)
            return mean.expand_as(x)

        return self._build(model, sites, target, "remove", mean_bias, "remove(relative")

    def replace(
        self, model: Model, sites: PositionalScheme, target: Target, positions: PositionMap, options: SiteOptions
    ) -> HookList:

        def mapped(x: torch.Tensor, t_q: torch.Tensor, t_k: torch.Tensor, rel: RelativeFacts, w: torch.Tensor,
                   buckets: Any) -> torch.Tensor:
            fq = positions(t_q[None]).reshape(-1).float()
            fk = positions(t_k[None]).reshape(-1).float()
            return w[buckets((fk[None, :] - fq[:, None]).round().long())]

        return self._build(model, sites, target, "replace", mapped, f"replace(relative, {positions.name}")

    def project_out(
        self, model: Model, sites: PositionalScheme, target: Target, basis: torch.Tensor | None, k: int | None
    ) -> HookList:
        raise not_supported(
            self.name, "project_out", sites,
            "A relative position bias is a number per head and key-query pair, not a vector: use zero/remove/replace "
            "at site='relative', or project a fitted residual subspace out with site='resid_pre' or "
            "pe_hooks.fit_eraser(model, data).",
        )
