"""The one place where model families differ: families described by what they are, as data.

A family is a ``Description``: its positional scheme, and which sites must fire and take edits
(measured on the model itself by ``pe_hooks.sites.facts``), plus what the site hooks see (ALiBi's
form inside the scores, whether attention is causal). ``describe(facts)`` returns the first
description a model's facts fit, as a ``FamilySpec``; the rotary specifics of one model (layout,
width, which layers rotate, scaling) are read from its HF config and rotary module by
``pe_hooks.inspect``. ``REFUSALS`` lists, as data, what pe-hooks cannot edit correctly yet, each
with the reason and what still works. No architecture class name appears here: a new architecture
whose config and hooks fit a description works without a code change; one that fits none is
refused by name with the reason.

To add a scheme or family: append a ``Description`` (and, for a new scheme, its site in
``SCHEME_SITE``), then a reference test. Traps that the measured facts encode:

- rotary models (Llama, NeoX, Gemma) expose ``hook_pos_embed`` but it never fires;
- GPT-NeoX / Phi-3 expose ``attn.hook_rot_q/k`` but they never fire (Llama's do);
- BERT's ``attn.hook_attn_scores`` is post-softmax and read-only: edits are discarded;
- BLOOM has no bias-only ALiBi hook: ``hook_attn_scores`` already holds ``slope_h * key_pos``
  (TL 4) or ``slope_h * (j - i)`` (TL 3);
- Gemma-4 / JetMoe and others fire only the top-level tables; GPT-J and CodeGen wrap HF attention
  whole (no editable positional hook);
- a bridge may reimplement attention and not be the HF model (TL 4.3's Falcon with ``alibi=True``):
  each block is compared with the HF module it wraps (``sites.fidelity``), refused where they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from pe_hooks.sites.alibi_bias import AlibiFacts
from pe_hooks.sites.facts import HookFacts, RotaryFacts
from pe_hooks.sites.relative import RelativeFacts
from pe_hooks.sites.tables import STACKS, TableFacts


class Scheme(str, Enum):
    """How a model encodes position."""

    LEARNED = "learned"  # absolute W_pos added to the token embedding (GPT-2, BERT)
    ROTARY = "rotary"  # q/k rotated by position-dependent angles (Llama, NeoX, Gemma)
    ALIBI = "alibi"  # a per-head linear bias on attention scores (BLOOM)
    SINUSOIDAL = "sinusoidal"  # fixed sin/cos table added to embeddings
    RELATIVE = "relative"  # a learned bias per (bucketed) key-query distance on the scores (T5)
    NONE = "none"  # no explicit position signal (NoPE)


class AlibiForm(str, Enum):
    """What the ALiBi term inside ``hook_attn_scores`` looks like."""

    KEY_POSITION = "slope*key_pos"  # TL 4 bridge over HF BLOOM: slope_h * j (softmax-equivalent)
    RELATIVE = "slope*(j-i)"  # TL 3 HookedTransformer


class RotaryLayout(str, Enum):
    """How rotary pairs the dimensions of q/k and lays out its cos/sin tables.

    ``pairs``: ``"half"`` (dims ``i`` and ``i + r/2`` of the rotated width ``r`` form band ``i``) or
    ``"adjacent"`` (dims ``2i, 2i+1``). ``tables``: ``"halves"`` (``cat(c, c)``), ``"repeated"``
    (``repeat_interleave(c, 2)``) or ``"single"`` (``c`` only, half width).
    """

    HALF = "rotate_half"  # Llama, NeoX, Phi...: pairs (i, i + r/2), tables cat(c, c)
    HALF_SINGLE = "rotate_half, half-width tables"  # GPT-OSS: tables c only
    ADJACENT = "interleaved pairs"  # GLM, ERNIE, DeepSeek-V3 (rope_interleave), TL 3 rotary_adjacent_pairs
    INTERLEAVED = "interleaved pairs, interleaved tables"  # Cohere: tables repeat_interleave(c, 2)

    @property
    def pairs(self) -> str:
        return "half" if self in (RotaryLayout.HALF, RotaryLayout.HALF_SINGLE) else "adjacent"

    @property
    def tables(self) -> str:
        return {RotaryLayout.HALF_SINGLE: "single", RotaryLayout.INTERLEAVED: "repeated"}.get(self, "halves")


@dataclass(frozen=True)
class FamilySpec:
    """What one model's family is: its scheme and which sites really fire and take edits.

    Built by ``describe`` from a ``Description`` and the model's measured facts.

    Attributes:
        name: the description's name (``"rotary tables"``, ``"learned"``...).
        backend: ``"bridge"`` (TL 4 TransformerBridge) or ``"hooked"`` (TL 3 HookedTransformer).
        scheme: the positional scheme.
        pos_embed_fires: ``hook_pos_embed`` fires (and is editable).
        pos_ids_hook: a hook that receives the integer position ids, if any.
        rotary_cos_sin: the top-level and per-layer ``hook_cos``/``hook_sin`` fire and take edits.
        rot_qk_fire: ``attn.hook_rot_q``/``hook_rot_k`` fire, take edits and carry whole heads.
        rotary_layout: how rotary pairs dims and lays out its tables.
        attn_scores_editable: edits in ``attn.hook_attn_scores`` reach the output.
        attn_scores_pre_softmax: the scores hook sees pre-softmax logits.
        alibi_form: what ALiBi looks like inside the scores hook.
        resid_sites: which of resid_pre / resid_mid / resid_post exist and fire.
        causal: decoder-only (causal) or encoder (bidirectional).
        never_fire: hook-name templates that exist on the model but never fire.
        notes: free-text caveats shown by ``pe-hooks inspect``.
        refused: why pe-hooks cannot edit this model's positions (the whole refusal message), or
            ``""``; a refused model keeps only its residual sites (``residual_only``).
        tables: the absolute position tables that take edits, one per stack (encoder first), each
            with the row offset position 0 reads and how positions are read (``sites.tables``).
        relative: the relative position biases that take edits, one per stack (``sites.relative``).
        alibi_slopes: each head's ALiBi slope as the scores hook holds it (measured: ``sites.alibi_bias``).
        resid_prefix: the blocks the residual and score sites are on (``encoder_blocks`` on an
            encoder-decoder bridge, which has no ``blocks.{i}`` alias).
    """

    name: str
    backend: str
    scheme: Scheme
    pos_embed_fires: bool = False
    pos_ids_hook: str | None = None
    rotary_cos_sin: bool = False
    rot_qk_fire: bool = False
    rotary_layout: RotaryLayout | None = None
    attn_scores_editable: bool = True
    attn_scores_pre_softmax: bool = True
    alibi_form: AlibiForm | None = None
    resid_sites: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post")
    causal: bool = True
    never_fire: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    refused: str = ""
    tables: tuple[TableFacts, ...] = ()
    relative: tuple[RelativeFacts, ...] = ()
    alibi_slopes: tuple[float, ...] = ()
    resid_prefix: str = "blocks"


@dataclass(frozen=True)
class Description:
    """One family, described by what it is (a registry entry: data, matched against facts).

    Attributes:
        name: what the family is called in ``inspect`` and the coverage table.
        backend: ``"bridge"`` or ``"hooked"``.
        scheme: the positional scheme (from ``cfg.positional_embedding_type`` and the rotary module).
        needs: sites (``pe_hooks.sites.facts.EDITS`` keys) that must fire and take edits.
        alibi_form: the form of ALiBi inside the scores hook (ALiBi families).
        pos_ids_hook: the hook that carries integer position ids, when it fires.
        notes: caveats shown by ``pe-hooks inspect``.
    """

    name: str
    backend: str
    scheme: Scheme
    needs: tuple[str, ...] = ()
    alibi_form: AlibiForm | None = None
    pos_ids_hook: str | None = None
    notes: tuple[str, ...] = ()


#: The families pe-hooks edits, first match wins. Extension point: append a Description.
DESCRIPTIONS: tuple[Description, ...] = (
    Description("learned, encoder-decoder", "bridge", Scheme.LEARNED, needs=("pos_embed", "decoder_pos_embed"),
                pos_ids_hook="pos_embed.hook_in", notes=("one learned table per stack (encoder, decoder)",)),
    Description("learned", "bridge", Scheme.LEARNED, needs=("pos_embed",), pos_ids_hook="pos_embed.hook_in"),
    Description("sinusoidal, encoder-decoder", "bridge", Scheme.SINUSOIDAL, needs=("pos_embed", "decoder_pos_embed"),
                pos_ids_hook="pos_embed.hook_in", notes=("one fixed sinusoidal table per stack (encoder, decoder)",)),
    Description("sinusoidal", "bridge", Scheme.SINUSOIDAL, needs=("pos_embed",), pos_ids_hook="pos_embed.hook_in"),
    Description("relative bias, encoder-decoder", "bridge", Scheme.RELATIVE, needs=("pos_embed", "decoder_pos_embed"),
                notes=("hook_pos_embed / decoder_pos_embed.hook_out carry each stack's bias [query, key, heads], "
                       "computed in the first layer and shared by every layer",)),
    Description("rotary tables", "bridge", Scheme.ROTARY, needs=("rotary_top", "rotary_layer")),
    Description("alibi", "bridge", Scheme.ALIBI, needs=("attn_scores",), alibi_form=AlibiForm.KEY_POSITION,
                notes=("no bias-only ALiBi hook: attn.hook_attn_scores already holds slope_h * key_position",)),
    Description("hooked-learned", "hooked", Scheme.LEARNED, needs=("pos_embed",),
                notes=("no hook receives the position ids on TL 3: positions are recovered from W_pos rows",)),
    Description("hooked-rotary", "hooked", Scheme.ROTARY, needs=("rot_qk",),
                notes=("TL 3 has no cos/sin hooks: rotary edits go through attn.hook_rot_q/k",)),
    Description("hooked-alibi", "hooked", Scheme.ALIBI, needs=("attn_scores",), alibi_form=AlibiForm.RELATIVE,
                notes=("ALiBi is inside attn.hook_attn_scores as slope*(j-i), cached at blocks[i].attn.alibi",)),
)

#: What every model with residual hooks still supports when its positional site is refused.
STILL_WORKS = "residual-stream erasers and probes (pe_hooks.fit_eraser, site='resid_pre') still work"


@dataclass(frozen=True)
class Refusal:
    """A known case pe-hooks does not edit correctly (yet): when it applies and why."""

    reason: str
    applies: Callable[[Scheme, HookFacts, RotaryFacts | None], bool] = field(repr=False)
    when_unfit: bool = False  # explains why no description fits (checked after the descriptions)
    detail: Callable[[HookFacts], str] | None = field(default=None, repr=False)  # what was measured, appended

    def message(self, facts: HookFacts) -> str:
        return self.reason + (f" ({self.detail(facts)})" if self.detail is not None else "")


def _attention_detail(facts: HookFacts) -> str:
    a = facts.attention
    if a is None:
        return ""
    return (f"measured on six tokens: blocks {list(a.differs)} differ by up to {a.worst:.2g} of the HF output's largest "
            f"value, tolerance {a.tol:.0e}")


#: hooks any explicit positional encoding exposes (none of them on a model without one)
POSITIONAL_HOOKS = ("hook_pos_embed", "decoder_pos_embed.hook_out", "rotary_emb.hook_cos", "blocks.{i}.attn.hook_cos",
                    "blocks.{i}.attn.hook_rot_q")

#: measured on any scheme (``sites.fidelity``): the bridge reimplements attention and its version is not
#: the HF module's (TL 4.3's Falcon with ``alibi=True`` adds half of BLOOM's slopes; the canary
#: ``tests/test_alibi_families.py::test_falcon_alibi_bridge_differs_from_hf_upstream`` says when that
#: is fixed, and this refusal then lifts by itself)
BRIDGE_NOT_HF = ("the bridge's own attention differs from the HF model's attention module on the same inputs "
                 "(TransformerLens reimplements it, e.g. with other ALiBi slopes), so no verb can be proven against "
                 "the HF model")

#: What pe-hooks refuses (data: a predicate and a reason): checked before the descriptions, or, with
#: ``when_unfit``, to say why none fits.
REFUSALS: tuple[Refusal, ...] = (
    Refusal(BRIDGE_NOT_HF, lambda s, h, r: h.attention is not None and bool(h.attention.differs),
            detail=_attention_detail),
    Refusal("its rotary module returns complex freqs_cis tables (no cos/sin hooks to edit)",
            lambda s, h, r: r is not None and r.complex_tables),
    Refusal("its rotary module has no inv_freq buffer tied to each layer (inv_freq, or one <layer type>_inv_freq "
            "per layer type of the config) to read the frequencies from",
            lambda s, h, r: r is not None and not r.has_inv_freq),
    Refusal("its rope_type changes inv_freq with the sequence length (dynamic NTK / LongRoPE), so decoded "
            "positions and edited tables would use stale frequencies",
            lambda s, h, r: r is not None and (r.rope_type in ("dynamic", "longrope") or "dynamic" in r.rope_type)),
    Refusal("hook_rot_q/k carry q/k in another shape than hook_q/k (a rotary sub-head, as in multi-head latent "
            "attention), and per-layer cos/sin do not take edits",
            lambda s, h, r: not _rotated_whole_heads("bridge", h) and "rotary_layer" not in h.takes_edits
            and "rot_qk" in h.takes_edits),
    Refusal("its relative-position buckets could not be reproduced from the key-query distances (the model's own "
            "buckets differ), so edited positions would read the wrong rows",
            lambda s, h, r: s is Scheme.RELATIVE and any(not f.buckets_match and not f.windowed for f in h.relative.values())),
    Refusal("it has no positional encoding (no position table, rotary tables, ALiBi or relative bias: recurrent or "
            "state-space mixers, or attention without positions; position is implicit), so there is nothing to zero, "
            "remove or replace",
            lambda s, h, r: s is Scheme.NONE and not any(t in h.exists for t in POSITIONAL_HOOKS), when_unfit=True),
    Refusal("its sinusoidal table is a fixed buffer added inside the HF model with no hook on it (hook_pos_embed "
            "does not exist), so no hook reaches the table",
            lambda s, h, r: s is Scheme.SINUSOIDAL and "hook_pos_embed" not in h.exists, when_unfit=True),
)
# ``r`` is None on non-rotary models: a refusal of one scheme tests ``s`` (or ``r``) itself.


def _missing(desc: Description, facts: HookFacts) -> list[str]:
    return [n for n in desc.needs if n not in facts.takes_edits]


_SITE_WORDS = {
    "pos_embed": "hook_pos_embed", "decoder_pos_embed": "decoder_pos_embed.hook_out", "rotary_top": "rotary_emb.hook_cos/sin", "rotary_layer": "per-layer attn.hook_cos/sin",
    "rot_qk": "attn.hook_rot_q/k", "attn_scores": "attn.hook_attn_scores",
}


def why_not(desc: Description, facts: HookFacts) -> str:
    """Why ``facts`` do not fit ``desc`` (which needed sites never fire or discard edits)."""
    parts = []
    for n in _missing(desc, facts):
        tpl = EDIT_TEMPLATE[n]
        parts.append(f"{_SITE_WORDS[n]} " + ("discards edits" if facts.fire(tpl) else
                                              "never fires" if tpl in facts.exists else "does not exist"))
    return ", ".join(parts)


EDIT_TEMPLATE = {
    "pos_embed": "hook_pos_embed", "decoder_pos_embed": "decoder_pos_embed.hook_out", "rotary_top": "rotary_emb.hook_cos", "rotary_layer": "blocks.{i}.attn.hook_cos",
    "rot_qk": "blocks.{i}.attn.hook_rot_q", "attn_scores": "blocks.{i}.attn.hook_attn_scores",
}


#: ALiBi whose measured bias is not one slope per head times the key position (``sites.alibi_bias``)
ALIBI_NOT_LINEAR = ("the bias inside its attention scores (queries zeroed) is not one slope per head times the key "
                    "position, so pe-hooks cannot subtract it exactly")


def describe(
    backend: str, scheme: Scheme, facts: HookFacts, rotary: RotaryFacts | None, n_bands: int | None = None,
    alibi: AlibiFacts | None = None,
) -> tuple[FamilySpec | None, str]:
    """``(spec, "")`` for the first description ``facts`` fit, or ``(None, reason)``. ``alibi``:
    the measured ALiBi bias of an ALiBi model (its slopes go into the spec)."""
    if facts.error:
        return None, f"its forward failed on six tokens ({facts.error})"
    if scheme is Scheme.ALIBI and alibi is not None and "attn_scores" in facts.takes_edits and not alibi.linear:
        return None, ALIBI_NOT_LINEAR + (f" ({alibi.error})" if alibi.error else "")
    candidates = [d for d in DESCRIPTIONS if d.backend == backend and d.scheme is scheme]
    for desc in candidates:
        if not _missing(desc, facts):
            for refusal in REFUSALS:  # fits a description, but a known case pe-hooks does not edit right
                if not refusal.when_unfit and refusal.applies(scheme, facts, rotary):
                    return None, refusal.message(facts)
            spec = _spec(desc, backend, facts, rotary, n_bands)
            if alibi is not None and desc.scheme is Scheme.ALIBI:
                spec = replace(spec, alibi_slopes=alibi.slopes)
            return spec, ""
    for refusal in REFUSALS:  # a known reason why none fits
        if refusal.when_unfit and refusal.applies(scheme, facts, rotary):
            return None, refusal.message(facts)
    if not candidates:
        return None, f"no description of {scheme.value} positions on the {backend} backend"
    return None, "; ".join(f"not '{d.name}': {why_not(d, facts)}" for d in candidates)


def residual_only(backend: str, scheme: Scheme, facts: HookFacts, refusal: str) -> FamilySpec | None:
    """The family of a refused model whose residual hooks fire: no positional site, only the
    residual stream (erasers, probes, ``project_out`` there); ``None`` when none fires."""
    resid = tuple(s for s in ("resid_pre", "resid_mid", "resid_post") if facts.fire(f"blocks.{{i}}.hook_{s}"))
    if facts.error or not resid:
        return None
    return FamilySpec(name="residual only", backend=backend, scheme=scheme, resid_sites=resid, causal=facts.causal,
                      attn_scores_editable="attn_scores" in facts.takes_edits, refused=refusal)


def _layout(rotary: RotaryFacts | None, facts: HookFacts, n_bands: int | None) -> RotaryLayout:
    if rotary is not None and rotary.repeated_tables:
        return RotaryLayout.INTERLEAVED
    if rotary is not None and rotary.adjacent_pairs:
        return RotaryLayout.ADJACENT
    width = facts.shapes.get("rotary_emb.hook_cos", (0,))[-1]
    if n_bands is not None and width == n_bands:
        return RotaryLayout.HALF_SINGLE
    return RotaryLayout.HALF


#: the note (and the rot_qk advice) of a model whose hook_rot_q/k carry only part of each head
SUBHEAD_NOTE = ("attn.hook_rot_q/k carry only a rotary sub-head (another shape than the heads before the rotation, "
                "as in multi-head latent attention): site='rot_qk' cannot rebuild whole heads; site='rotary' edits the "
                "rotation")


def _same_heads(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    """Shapes ``a`` (post-rotation) and ``b`` (pre-rotation) hold the same heads: equal, ``[b, s, h, d]``
    vs ``[b, h, s, d]``, or ``[b, s, h, d]`` vs ``[b, s, h * d]`` (what ``site='rot_qk'`` rebuilds)."""
    if a is None or b is None:
        return False
    if a == b or (len(a) == len(b) == 4 and (a[0], a[2], a[1], a[3]) == b):
        return True
    return len(a) == 4 and len(b) == 3 and a[:2] == b[:2] and a[2] * a[3] == b[2]


def _rotated_whole_heads(backend: str, facts: HookFacts) -> bool:
    """``hook_rot_q/k`` are the rotation of the hook before them (``hook_q_normed`` where q/k are
    normed first, else ``hook_q``), same heads: what ``site='rot_qk'`` needs."""
    if backend == "hooked":
        return True
    for w in ("q", "k"):
        normed = facts.before(f"blocks.{{i}}.attn.hook_{w}_normed", f"blocks.{{i}}.attn.hook_rot_{w}")
        pre = facts.shapes.get(f"blocks.{{i}}.attn.hook_{w}" + ("_normed" if normed else ""))
        if not _same_heads(facts.shapes.get(f"blocks.{{i}}.attn.hook_rot_{w}"), pre):
            return False
    return True


def _spec(desc: Description, backend: str, facts: HookFacts, rotary: RotaryFacts | None, n_bands: int | None) -> FamilySpec:
    rot_qk = "rot_qk" in facts.takes_edits and _rotated_whole_heads(backend, facts)
    never = [t for t in sorted(facts.exists - set(facts.fires)) if "resid" not in t and not t.endswith(("hook_q", "hook_k"))]
    prefix = "blocks" if facts.fire("blocks.{i}.hook_resid_pre") or not facts.fire("encoder_blocks.{i}.hook_resid_pre") \
        else "encoder_blocks"  # an encoder-decoder bridge: residual sites of the encoder stack
    resid = tuple(s for s in ("resid_pre", "resid_mid", "resid_post") if facts.fire(f"{prefix}.{{i}}.hook_{s}"))
    notes = list(desc.notes)
    if prefix != "blocks":
        notes.append(f"residual and attention-score sites are the encoder's ({prefix}.*)")
    if "rot_qk" in facts.takes_edits and not rot_qk:
        notes.append(SUBHEAD_NOTE)
    if not facts.causal:
        notes.append("bidirectional attention (an encoder)")
    if "attn_scores" not in facts.takes_edits and facts.fire("blocks.{i}.attn.hook_attn_scores"):
        notes.append("attn.hook_attn_scores " + ("is post-softmax and " if facts.scores_post_softmax else "")
                     + "discards edits on this model")
    if "blocks.{i}.hook_resid_mid" in facts.exists and "resid_mid" not in resid:
        notes.append("parallel attention+MLP: there is no resid_mid")
    tables = _tables(desc, facts)
    ids_hook = desc.pos_ids_hook if desc.pos_ids_hook and facts.fire(desc.pos_ids_hook) else None
    if tables and not tables[0].ids_index:
        ids_hook = None  # its input is not the row ids (OPT's attention mask, BART's embeddings): rows are matched
    return FamilySpec(
        name=desc.name, backend=backend, scheme=desc.scheme,
        pos_embed_fires="pos_embed" in facts.takes_edits,
        pos_ids_hook=ids_hook,
        rotary_cos_sin="rotary_layer" in facts.takes_edits and facts.fire("rotary_emb.hook_cos"),
        rot_qk_fire=rot_qk and desc.scheme is Scheme.ROTARY,
        rotary_layout=_layout(rotary, facts, n_bands) if desc.scheme is Scheme.ROTARY else None,
        attn_scores_editable="attn_scores" in facts.takes_edits,
        attn_scores_pre_softmax=not facts.scores_post_softmax,
        alibi_form=desc.alibi_form, resid_sites=resid or ("resid_pre", "resid_post"), causal=facts.causal,
        never_fire=tuple(t.replace("{i}", "*") for t in never), notes=tuple(notes), tables=tables, resid_prefix=prefix,
        relative=tuple(facts.relative[h] for h in STACKS if h in facts.relative and EDIT_KEY[h] in desc.needs)
        if desc.scheme is Scheme.RELATIVE else (),
    )


def _tables(desc: Description, facts: HookFacts) -> tuple[TableFacts, ...]:
    """The position tables a table family edits: the measured ones whose edit sites it needs."""
    if desc.scheme not in (Scheme.LEARNED, Scheme.SINUSOIDAL):
        return ()
    return tuple(facts.tables[h] for h in STACKS if h in facts.tables and EDIT_KEY[h] in desc.needs)


EDIT_KEY = {"hook_pos_embed": "pos_embed", "decoder_pos_embed.hook_out": "decoder_pos_embed"}


# ------------------------------------------------------------------------------------------
# which site acts on which scheme (the verbs' ``site="auto"``, and every "use site X" advice)

#: The intervention site of each scheme: what ``site="auto"`` picks (see ``default_site``).
SCHEME_SITE: dict[Scheme, str] = {
    Scheme.LEARNED: "pos_embed",
    Scheme.SINUSOIDAL: "pos_embed",
    Scheme.RELATIVE: "relative",
    Scheme.ROTARY: "rotary",
    Scheme.ALIBI: "alibi",
}

ERASER_ADVICE = "Use a residual-stream eraser: pe_hooks.fit_eraser(model, data)."

_SCHEME_ADVICE: dict[Scheme, str] = {
    Scheme.LEARNED: "Use site='pos_embed' (learned absolute positions).",
    Scheme.SINUSOIDAL: "Use site='pos_embed' (the sinusoidal position table).",
    Scheme.RELATIVE: "Use site='relative' (the relative position bias, per stack and head).",
    Scheme.ROTARY: "Use site='rotary' (the rotary cos/sin tables).",
    Scheme.ALIBI: "Use site='alibi' (ALiBi biases in the attention scores).",
}


def default_site(family: FamilySpec) -> str | None:
    """The site ``site="auto"`` resolves to on a family (``None``: no explicit positional site)."""
    site = SCHEME_SITE.get(family.scheme) if not family.refused else None
    if site == "rotary" and not family.rotary_cos_sin and family.rot_qk_fire:
        return "rot_qk"  # TL 3.x: no cos/sin hooks
    return site


def site_advice(site: str, family: FamilySpec) -> str:
    """What to use instead of ``site`` on a model of ``family`` (one sentence naming a site)."""
    scheme = family.scheme
    if site == "pos_embed" and scheme is Scheme.ROTARY:
        return "hook_pos_embed exists but never fires on rotary models; use site='rotary'."
    if site == "pos_embed" and scheme is Scheme.ALIBI:
        return "ALiBi models have no positional embedding; use site='alibi'."
    if site == "alibi" and not family.attn_scores_editable:
        return (
            "Attention scores are post-softmax and read-only on this model (edits are discarded); "
            + _SCHEME_ADVICE.get(scheme, ERASER_ADVICE)
        )
    if site == "rotary" and scheme is Scheme.ROTARY and not family.rotary_cos_sin:
        return "This model has no cos/sin hooks (TransformerLens 3.x): use site='rot_qk'."
    if site == "rot_qk" and scheme is Scheme.ROTARY and SUBHEAD_NOTE in family.notes:
        return f"Here {SUBHEAD_NOTE}."
    if site == "rot_qk" and scheme is Scheme.ROTARY and not family.rot_qk_fire:
        return "attn.hook_rot_q/k never fire on this architecture (GPT-NeoX bridge): use site='rotary'."
    return _SCHEME_ADVICE.get(scheme, ERASER_ADVICE)


def per_head_advice(site: str, family: FamilySpec) -> str:
    """Where per-head (``heads=``) edits are possible when ``site`` acts on whole layers."""
    if family.scheme is Scheme.ROTARY:
        return "for per-head edits use site='rot_qk'" + (
            "" if family.rot_qk_fire else " (not available on this model: its hook_rot_q/k never fire)"
        )
    if family.scheme is Scheme.ALIBI:
        return "per-head edits are available at site='alibi'"
    if family.scheme is Scheme.RELATIVE:
        return "per-head edits are available at site='relative'"
    return f"site '{site}' has no per-head form on this model"
