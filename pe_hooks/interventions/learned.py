"""Learned absolute positions (GPT-2, BERT): site ``"pos_embed"`` at ``hook_pos_embed``.

The embedding is ``h_0 = W_E[token] + W_pos[t]`` (BERT then applies a LayerNorm). The hook sees
``W_pos[t]`` for every token; the real ``t`` comes from ``pos_embed.hook_in`` on a
TransformerBridge (so KV-cache decoding and padding are right) or, on TL 3.x, from the row of
``W_pos`` each vector equals.

- ``zero``: ``W_pos[t] -> 0``: no positional signal at all (off-distribution: the model never saw
  an embedding without one).
- ``remove`` (mean-ablation): ``W_pos[t] -> mean_{u in P} W_pos[u]`` for every token, with ``P``
  the positions each row uses in this forward (``0..max t`` of that row, so a left-padded row
  gets what it gets alone) or ``reference=``. It keeps the *average*
  positional vector the model expects and drops only what varies with position, so it stays
  closer to the training distribution than ``zero``.
- ``replace(f)``: ``W_pos[f(t)]``; fractional ``f(t)`` interpolates linearly between rows.
- ``project_out(basis, k)``: ``W_pos[t] -> W_pos[t] - B^T B W_pos[t]`` for an orthonormal basis
  ``B`` ``[k, d]``: a given one, or the top-``k`` principal components of the rows
  ``W_pos[1:]`` (centred; row 0 is excluded because it is anomalous in GPT-2). ``k=None`` takes
  the fewest components explaining 95% of the variance.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from pe_hooks.core.errors import SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.interventions.base import SiteOptions, Target, not_supported
from pe_hooks.interventions.positions import PositionMap
from pe_hooks.interventions.row_mean import own_prefix_mean
from pe_hooks.sites.positions import table_positions
from pe_hooks.sites.registry import Scheme
from pe_hooks.sites.scheme import PositionalScheme
from pe_hooks.sites.tables import STACKS, TableFacts, position_table


def orthonormal_basis(basis: torch.Tensor, d: int, k: int | None = None) -> torch.Tensor:
    """Orthonormal rows spanning ``basis`` ``[n, d]`` (QR), with a clear error on a wrong shape.

    ``k``: only the first ``k`` given directions (Gram-Schmidt order: row ``i`` of the result spans
    the given rows ``0..i``); an error if they are not ``k`` independent directions."""
    b = torch.as_tensor(basis, dtype=torch.float32)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != d:
        raise SchemeError(f"basis must have shape [k, {d}] (d_model), got {tuple(b.shape)}; pass k directions of width {d}")
    if not bool(torch.isfinite(b).all()):
        raise SchemeError("basis contains NaN or inf; pass finite directions")
    q, r = torch.linalg.qr(b.T)
    keep = r.diagonal().abs() > 1e-6 * max(1.0, float(r.diagonal().abs().max()))
    if not bool(keep.any()):
        raise SchemeError("basis is all zeros; pass non-zero directions [k, d_model]")
    if k is None:
        return q[:, keep].T.contiguous()
    if keep[:k].numel() < k or not bool(keep[:k].all()):
        raise SchemeError(
            f"the first k={k} rows of basis span only {int(keep[:k].sum())} independent directions; "
            "pass k linearly independent rows first, or a smaller k"
        )
    return q[:, :k].T.contiguous()


def w_pos_components(w_pos: torch.Tensor, k: int | None = None, var: float = 0.95) -> torch.Tensor:
    """Top-``k`` principal directions ``[k, d]`` of the centred rows ``W_pos[1:]``."""
    rows = w_pos[1:].float()
    rows = rows - rows.mean(0)
    _, s, vh = torch.linalg.svd(rows, full_matrices=False)
    if k is None:
        frac = (s**2).cumsum(0) / (s**2).sum()
        k = int((frac < var).sum()) + 1
    if not 0 < k <= vh.shape[0]:
        raise SchemeError(f"k must be in 1..{vh.shape[0]}")
    return vh[:k]


class PosEmbed:
    """Site ``"pos_embed"``: the absolute position table's output (learned or sinusoidal), on every
    stack's table (encoder and decoder of encoder-decoder models; ``stacks=`` picks some)."""

    name: ClassVar[str] = "pos_embed"
    description: ClassVar[str] = "absolute position table output (hook_pos_embed, decoder_pos_embed.hook_out)"
    accepts: ClassVar[dict[str, tuple[str, ...]]] = {"remove": ("reference",)}

    def _check(self, sites: PositionalScheme, verb: str, target: Target) -> str:
        if sites.scheme not in (Scheme.LEARNED, Scheme.SINUSOIDAL) or sites.pos_embed is None:
            raise not_supported(self.name, verb, sites)
        if target.heads is not None:
            raise SchemeError("heads= does not apply to the positional embedding (it is not per head); leave heads= out")
        if len(target.layers) != sites.n_layers:
            raise SchemeError(
                "layers= does not apply to the positional embedding (it enters once, before layer 0); leave layers= "
                "out, or act on the residual stream of chosen layers with pe_hooks.project_out(model, basis, "
                "site='resid_pre', layers=...)"
            )
        return sites.pos_embed

    def _tables(self, model: Model, sites: PositionalScheme, target: Target) -> list[tuple[TableFacts | None, str, torch.Tensor]]:
        """``(facts, hook, rows of positions 0..n-1)`` of each table the verb acts on."""
        if not sites.family.tables:  # TL 3.x or a table not measured: hook_pos_embed over W_pos
            return [(None, sites.pos_embed or "hook_pos_embed", model.W_pos)]
        out: list[tuple[TableFacts | None, str, torch.Tensor]] = []
        for t in sites.family.tables:
            if target.stacks is None or STACKS[t.hook] in target.stacks:
                full = position_table(model, t.hook)
                out.append((t, t.hook, (full if full is not None else model.W_pos)[t.offset:]))
        return out

    def _build(
        self, model: Model, sites: PositionalScheme, target: Target, verb: str, label: str,
        new_rows: Any, basis: torch.Tensor | None = None,
    ) -> HookList:
        self._check(sites, verb, target)
        pairs: list[tuple[str, HookFn]] = []
        for table, site_hook, w_pos in self._tables(model, sites, target):
            src = table_positions(model, sites, table)

            def fn(x: torch.Tensor, hook: Any, src: Any = src, w_pos: torch.Tensor = w_pos, name: str = site_hook) -> torch.Tensor:
                xb = x if x.ndim == 3 else x[None]  # [seq, d] tables: no batch dimension
                t = src.get(xb)
                out = new_rows(xb, t.clamp(min=0), w_pos.detach().to(x.device, torch.float32), name).to(x.dtype)
                keep = t < 0  # a padding token's row (before position 0): not a position, left alone
                if target.exempt_first:
                    keep = keep | (t == 0)
                out = torch.where(keep[..., None], xb, out)
                return out if x.ndim == 3 else out[0]

            pairs += [*src.hooks, (site_hook, fn)]
        return HookList(pairs, label=label, basis=basis)

    def zero(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        return self._build(model, sites, target, "zero", "zero(pos_embed)", lambda x, t, w, h: torch.zeros_like(x, dtype=torch.float32))

    def remove(self, model: Model, sites: PositionalScheme, target: Target, options: SiteOptions) -> HookList:
        reference = options.reference
        n_ctx = min(int(w.shape[0]) for _, _, w in self._tables(model, sites, target)) if sites.pos_embed else sites.n_ctx
        if reference is not None:
            ref = torch.as_tensor(list(reference), dtype=torch.long)
            if ref.numel() == 0 or int(ref.min()) < 0 or int(ref.max()) >= n_ctx:
                raise SchemeError(
                    f"reference positions must be non-empty and within 0..{n_ctx - 1} (the rows of W_pos); "
                    f"pass e.g. reference=range(N) with N <= {n_ctx}"
                )

        def rows(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, hook: str) -> torch.Tensor:
            if reference is not None:
                return w[ref.to(w.device)].mean(0).expand_as(x)
            return own_prefix_mean(w, t).expand_as(x)  # each row its own 0..max t

        return self._build(model, sites, target, "remove", "remove(pos_embed)", rows)

    def replace(
        self, model: Model, sites: PositionalScheme, target: Target, positions: PositionMap, options: SiteOptions
    ) -> HookList:

        def rows(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, hook: str) -> torch.Tensor:
            n_ctx = int(w.shape[0])
            new_t = positions(t)
            if bool((new_t < 0).any()) or bool((new_t > n_ctx - 1).any()):
                raise SchemeError(
                    f"{positions!r} maps to positions outside 0..{n_ctx - 1}, the rows W_pos has; "
                    "choose a map that stays inside the context"
                )
            lo = new_t.floor().long()
            hi = (lo + 1).clamp(max=n_ctx - 1)
            frac = (new_t - lo.float())[..., None]
            return w[lo] * (1 - frac) + w[hi] * frac

        return self._build(model, sites, target, "replace", f"replace(pos_embed, {positions.name})", rows)

    def project_out(
        self, model: Model, sites: PositionalScheme, target: Target, basis: torch.Tensor | None, k: int | None
    ) -> HookList:
        """Each table loses its own top-``k`` principal directions (``basis=None``) or ``basis``;
        the returned list's ``.basis`` is the first table's."""
        self._check(sites, "project_out", target)
        tables = self._tables(model, sites, target)
        given = None if basis is None else orthonormal_basis(basis, sites.d_model, k)
        bases = {hook: w_pos_components(w.detach().float(), k) if given is None else given for _, hook, w in tables}

        def rows(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, hook: str) -> torch.Tensor:
            bb = bases[hook].to(x.device)
            xf = x.float()
            return xf - (xf @ bb.T) @ bb

        first = next(iter(bases.values()))
        return self._build(model, sites, target, "project_out", f"project_out(pos_embed, k={first.shape[0]})", rows, first)
