"""``PositionalScheme``: what ``pe_hooks.inspect(model)`` returns.

It lists the exact hook names of every positional site that really fires on this model, plus
the numbers an intervention needs (rotary bases, head counts, context length, BOS policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pe_hooks.core.errors import HookPointError, SchemeError
from pe_hooks.core.validate import check_indices
from pe_hooks.sites.registry import AlibiForm, FamilySpec, RotaryLayout, Scheme
from pe_hooks.sites.tables import STACKS, TABLE_INPUTS

RESID_SITES = ("resid_pre", "resid_mid", "resid_post")


@dataclass(frozen=True)
class PositionalScheme:
    """The positional sites of one model. Build it with ``pe_hooks.inspect(model)``.

    Hook-name tuples are indexed by layer (``attn_scores[3]`` is layer 3's scores hook).
    """

    model_name: str
    architecture: str
    family: FamilySpec
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    n_ctx: int
    prepend_bos: bool
    pos_embed: str | None = None
    pos_ids_hook: str | None = None
    w_pos_shape: tuple[int, int] | None = None
    rotary_cos: str | None = None
    rotary_sin: str | None = None
    layer_cos: tuple[str, ...] = ()
    layer_sin: tuple[str, ...] = ()
    rot_q: tuple[str, ...] = ()
    rot_k: tuple[str, ...] = ()
    pre_rot_q: tuple[str, ...] = ()  # what hook_rot_q rotates: hook_q, or hook_q_normed where q/k are normed first
    pre_rot_k: tuple[str, ...] = ()
    rotary_dim: int | None = None
    rotary_base: tuple[float, ...] = ()  # one per layer
    rotary_layers: tuple[int, ...] = ()  # layers whose q/k rotate (NoPE layers are left out)
    rope_type: str = "default"
    attn_scores: tuple[str, ...] = ()
    resid: dict[str, tuple[str, ...]] = field(default_factory=dict)
    never_fire: tuple[str, ...] = ()

    # --- convenience -------------------------------------------------------------------
    @property
    def scheme(self) -> Scheme:
        return self.family.scheme

    @property
    def refused(self) -> str:
        """Why pe-hooks cannot edit this model's positions (``""``: it can)."""
        return self.family.refused

    def require_positions(self) -> None:
        """Raise the refusal (a ``SchemeError``) on a model whose positions pe-hooks cannot edit."""
        if self.family.refused:
            raise SchemeError(self.family.refused)

    @property
    def backend(self) -> str:
        return self.family.backend

    @property
    def causal(self) -> bool:
        return self.family.causal

    @property
    def attn_scores_editable(self) -> bool:
        return self.family.attn_scores_editable

    @property
    def alibi_form(self) -> AlibiForm | None:
        return self.family.alibi_form

    @property
    def rotary_layout(self) -> RotaryLayout | None:
        return self.family.rotary_layout

    @property
    def stacks(self) -> tuple[str, ...]:
        """The stacks with their own positional signal (``("encoder", "decoder")`` on encoder-decoder
        models; ``()`` when the model has one stack)."""
        hooks = [t.hook for t in self.family.tables] + [r.hook for r in self.family.relative]
        found = tuple(STACKS[h] for h in hooks)
        return found if len(found) > 1 else ()

    def resid_hook(self, layer: int, site: str = "resid_pre") -> str:
        """Hook name of a residual site; ``layer == n_layers`` with resid_pre means the final
        residual (``blocks.{n-1}.hook_resid_post``)."""
        if site not in self.resid:
            raise HookPointError(
                f"'{site}' does not exist on {self.architecture}; available: {', '.join(self.resid)}"
            )
        if site == "resid_pre" and layer == self.n_layers:
            return self.resid["resid_post"][-1]
        self.check_layers([layer])
        return self.resid[site][layer]

    def check_layers(self, layers: Any) -> list[int]:
        """Validate layer indices (negative ones count from the end); return them normalised.

        Raises ``RangeError`` (an ``IndexError``) for a layer the model lacks and ``ArgumentError``
        for a non-integer, a repeated layer or an empty list.
        """
        return check_indices(layers, "layers", self.n_layers, allow_negative=True,
                             what=f"{self.model_name} has layers")

    def firing_hooks(self) -> list[str]:
        """Every hook name this scheme reports (all of them fire on a forward pass)."""
        names: list[str] = []
        for n in (self.pos_embed, self.pos_ids_hook, self.rotary_cos, self.rotary_sin):
            if n:
                names.append(n)
        rotating = set(self.rotary_layers)
        for group in (self.layer_cos, self.layer_sin, self.rot_q, self.rot_k):
            names.extend(n for i, n in enumerate(group) if i in rotating)
        names.extend(self.attn_scores)
        for group in self.resid.values():
            names.extend(group)
        return names

    def summary(self) -> str:
        """A readable multi-line description (what ``pe-hooks inspect`` prints)."""

        def span(names: tuple[str, ...]) -> str:
            if not names:
                return "-"
            if len(names) == 1:
                return names[0]
            return f"{names[0]} ... {names[-1]}  ({len(names)} layers)"

        lines = [
            f"model        {self.model_name}  ({self.architecture}, {self.backend}, family '{self.family.name}')",
            f"scheme       {self.scheme.value}",
            f"shape        {self.n_layers} layers, d_model {self.d_model}, {self.n_heads} heads "
            f"({self.n_kv_heads} KV), d_head {self.d_head}, context {self.n_ctx}",
            f"prepend BOS  {self.prepend_bos}  (a prepended BOS shifts every position by one)",
            f"causal       {self.causal}",
        ]
        if self.refused:
            lines.append(f"REFUSED      {self.refused.split(': ', 1)[-1]}")
        if self.scheme in (Scheme.LEARNED, Scheme.SINUSOIDAL) and not self.refused:
            lines.append(
                f"pos embed    {self.pos_embed}  W_pos {self.w_pos_shape[0]}x{self.w_pos_shape[1]}"
                if self.w_pos_shape
                else f"pos embed    {self.pos_embed}"
            )
            for t in self.family.tables:
                lines.append(
                    f"table        {t.hook}: {t.rows} rows, position t reads row t + {t.offset}; "
                    + ("trained" if t.trainable else "fixed (sinusoidal)")
                    + ("" if t.batched else ", output [seq, d] (no batch dimension)")
                    + f"; positions from {TABLE_INPUTS[t.hook] + ' - ' + str(t.offset) if t.ids_index else 'the rows its vectors equal'}"
                )
            if self.pos_ids_hook:
                lines.append(f"position ids {self.pos_ids_hook}")
        if self.scheme is Scheme.ROTARY and not self.refused:
            bases = sorted(set(self.rotary_base))
            lines.append(
                f"rotary       dim {self.rotary_dim} of {self.d_head}, base "
                + ", ".join(f"{b:g}" for b in bases)
                + f", layout {self.rotary_layout.value if self.rotary_layout else '?'}, rope_type {self.rope_type}"
            )
            if len(self.rotary_layers) != self.n_layers:
                lines.append(f"rotating     layers {list(self.rotary_layers)} (the others are NoPE: left alone)")
            if self.rotary_cos:
                lines.append(f"cos/sin      {self.rotary_cos}, {self.rotary_sin}")
            lines.append(f"layer cos    {span(self.layer_cos)}")
            lines.append(f"layer sin    {span(self.layer_sin)}")
            lines.append(f"rot_q        {span(self.rot_q)}")
            lines.append(f"rot_k        {span(self.rot_k)}")
        for r in self.family.relative:
            lines.append(
                f"relative     {r.hook}: bias [q, k, {r.n_heads} heads] from {r.num_buckets} buckets up to distance "
                f"{r.max_distance}, " + ("both directions" if r.bidirectional else "past keys only (causal)")
                + ("; over a local block window (positions inside the window)" if r.windowed else "")
            )
        if self.scheme is Scheme.ALIBI and self.alibi_form and not self.refused:
            lines.append(f"alibi        inside attn_scores as {self.alibi_form.value}")
            if self.family.alibi_slopes:
                lines.append("alibi slopes " + ", ".join(f"{m:.4g}" for m in self.family.alibi_slopes)
                             + "  (measured in layer 0's scores with the queries zeroed)")
        editable = "editable" if self.attn_scores_editable else "READ-ONLY"
        softmax = "pre-softmax" if self.family.attn_scores_pre_softmax else "post-softmax"
        lines.append(f"attn scores  {span(self.attn_scores)}  [{softmax}, {editable}]")
        for site, names in self.resid.items():
            lines.append(f"{site:<12} {span(names)}")
        if self.never_fire:
            lines.append("never fire   " + ", ".join(self.never_fire) + "  (exist but never fire: not used)")
        for note in self.family.notes:
            lines.append(f"note         {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
