"""The one place where model families differ, and where each scheme's site is named.

Each ``FamilySpec`` records, for one family, which positional scheme it uses and which
TransformerLens hooks *really fire and are editable* (measured on TL 4.3 and TL 3.9, see
``shared/REFERENCE.md``). Everything else in pe-hooks reads these facts through
``pe_hooks.inspect``; no other module branches on the model family.

Traps recorded here:

- rotary models (Llama, NeoX, Gemma) expose ``hook_pos_embed`` but it never fires;
- GPT-NeoX exposes ``attn.hook_rot_q/k`` but they never fire (Llama's do);
- BERT's ``attn.hook_attn_scores`` is post-softmax and read-only: edits are discarded;
- BLOOM has no bias-only ALiBi hook: ``hook_attn_scores`` already holds ``slope_h * key_pos``
  (TL 4) or ``slope_h * (j - i)`` (TL 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Scheme(str, Enum):
    """How a model encodes position."""

    LEARNED = "learned"  # absolute W_pos added to the token embedding (GPT-2, BERT)
    ROTARY = "rotary"  # q/k rotated by position-dependent angles (Llama, NeoX, Gemma)
    ALIBI = "alibi"  # a per-head linear bias on attention scores (BLOOM)
    SINUSOIDAL = "sinusoidal"  # fixed sin/cos table added to embeddings
    NONE = "none"  # no explicit position signal (NoPE)


class AlibiForm(str, Enum):
    """What the ALiBi term inside ``hook_attn_scores`` looks like."""

    KEY_POSITION = "slope*key_pos"  # TL 4 bridge over HF BLOOM: slope_h * j (softmax-equivalent)
    RELATIVE = "slope*(j-i)"  # TL 3 HookedTransformer


class RotaryLayout(str, Enum):
    """How rotary pairs the dimensions of q/k.

    Only rotate-half is implemented (HF Llama/NeoX/Gemma, and TL 3 by default); TL 3's
    ``rotary_adjacent_pairs=True`` layout (dims ``2i, 2i+1``) is not supported.
    """

    HALF = "rotate_half"  # dims i and i + d/2 form a pair


@dataclass(frozen=True)
class FamilySpec:
    """Facts about one model family's positional sites.

    Attributes:
        name: short family name (``"gpt2"``, ``"llama"``...).
        architectures: HF model class names (TL 4 bridge) or TL 3 ``original_architecture`` names.
        backend: ``"bridge"`` (TL 4 TransformerBridge) or ``"hooked"`` (TL 3 HookedTransformer).
        scheme: the positional scheme.
        pos_embed_fires: ``hook_pos_embed`` fires (and is editable).
        pos_ids_hook: a hook that receives the integer position ids, if any.
        rotary_cos_sin: the top-level and per-layer ``hook_cos``/``hook_sin`` fire.
        rot_qk_fire: ``attn.hook_rot_q``/``hook_rot_k`` fire (post-rotation q and k).
        attn_scores_editable: edits in ``attn.hook_attn_scores`` reach the output.
        attn_scores_pre_softmax: the scores hook sees pre-softmax logits.
        alibi_form: what ALiBi looks like inside the scores hook.
        resid_sites: which of resid_pre / resid_mid / resid_post exist and fire.
        causal: decoder-only (causal) or encoder (bidirectional).
        never_fire: hook-name templates that exist on the model but never fire.
        notes: free-text caveats shown by ``pe-hooks inspect``.
    """

    name: str
    architectures: tuple[str, ...]
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


_ROTARY_NEVER = ("hook_pos_embed",)

FAMILIES: tuple[FamilySpec, ...] = (
    # ---- TransformerLens 4.x TransformerBridge over HF models ----
    FamilySpec(
        name="gpt2",
        architectures=("GPT2LMHeadModel", "GPT2Model"),
        backend="bridge",
        scheme=Scheme.LEARNED,
        pos_embed_fires=True,
        pos_ids_hook="pos_embed.hook_in",
    ),
    FamilySpec(
        name="bert",
        architectures=("BertForMaskedLM", "BertModel", "BertForNextSentencePrediction"),
        backend="bridge",
        scheme=Scheme.LEARNED,
        pos_embed_fires=True,
        pos_ids_hook="pos_embed.hook_in",
        attn_scores_editable=False,
        attn_scores_pre_softmax=False,
        causal=False,
        notes=(
            "attn.hook_attn_scores is post-softmax and read-only on BERT: edits are discarded",
            "W_pos is added before the embedding LayerNorm (embed_ln)",
        ),
    ),
    FamilySpec(
        name="llama",
        architectures=(
            "LlamaForCausalLM",
            "MistralForCausalLM",
            "Qwen2ForCausalLM",
            "Qwen3ForCausalLM",
        ),
        backend="bridge",
        scheme=Scheme.ROTARY,
        rotary_cos_sin=True,
        rot_qk_fire=True,
        rotary_layout=RotaryLayout.HALF,
        never_fire=_ROTARY_NEVER,
    ),
    FamilySpec(
        name="gemma",
        architectures=("Gemma3ForCausalLM", "Gemma2ForCausalLM", "GemmaForCausalLM"),
        backend="bridge",
        scheme=Scheme.ROTARY,
        rotary_cos_sin=True,
        rot_qk_fire=True,
        rotary_layout=RotaryLayout.HALF,
        never_fire=_ROTARY_NEVER,
        notes=(
            "Gemma 3 mixes local and global layers with different rotary bases: per-layer "
            "blocks.i.attn.hook_cos/sin carry each layer's base, the top-level one only the global",
        ),
    ),
    FamilySpec(
        name="neox",
        architectures=("GPTNeoXForCausalLM",),
        backend="bridge",
        scheme=Scheme.ROTARY,
        rotary_cos_sin=True,
        rot_qk_fire=False,
        rotary_layout=RotaryLayout.HALF,
        resid_sites=("resid_pre", "resid_post"),
        never_fire=_ROTARY_NEVER + ("blocks.{i}.attn.hook_rot_q", "blocks.{i}.attn.hook_rot_k"),
        notes=("parallel attention+MLP: there is no resid_mid", "partial rotary (rotary_pct)"),
    ),
    FamilySpec(
        name="bloom",
        architectures=("BloomForCausalLM",),
        backend="bridge",
        scheme=Scheme.ALIBI,
        alibi_form=AlibiForm.KEY_POSITION,
        notes=("no bias-only ALiBi hook: attn.hook_attn_scores already holds slope_h * key_position",),
    ),
    # ---- TransformerLens 3.x HookedTransformer (keyed on cfg.original_architecture, then on
    # cfg.positional_embedding_type as a fallback) ----
    FamilySpec(
        name="hooked-learned",
        architectures=("GPT2LMHeadModel", "OPTForCausalLM", "standard"),
        backend="hooked",
        scheme=Scheme.LEARNED,
        pos_embed_fires=True,
        notes=("no hook receives the position ids on TL 3: positions are recovered from W_pos rows",),
    ),
    FamilySpec(
        name="hooked-neox",
        architectures=("GPTNeoXForCausalLM",),
        backend="hooked",
        scheme=Scheme.ROTARY,
        rot_qk_fire=True,
        rotary_layout=RotaryLayout.HALF,
        resid_sites=("resid_pre", "resid_post"),
        notes=("TL 3 has no cos/sin hooks: rotary edits go through attn.hook_rot_q/k", "parallel attention+MLP: no resid_mid"),
    ),
    FamilySpec(
        name="hooked-rotary",
        architectures=("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "rotary"),
        backend="hooked",
        scheme=Scheme.ROTARY,
        rot_qk_fire=True,
        rotary_layout=RotaryLayout.HALF,
        notes=("TL 3 has no cos/sin hooks: rotary edits go through attn.hook_rot_q/k",),
    ),
    FamilySpec(
        name="hooked-alibi",
        architectures=("BloomForCausalLM", "alibi"),
        backend="hooked",
        scheme=Scheme.ALIBI,
        alibi_form=AlibiForm.RELATIVE,
        never_fire=("hook_pos_embed",),
        notes=("ALiBi is inside attn.hook_attn_scores as slope*(j-i), cached at blocks[i].attn.alibi",),
    ),
)


def family_for(architecture: str, backend: str) -> FamilySpec | None:
    """The spec whose ``architectures`` lists ``architecture`` for ``backend``, if any."""
    for spec in FAMILIES:
        if spec.backend == backend and architecture in spec.architectures:
            return spec
    return None


def supported_architectures(backend: str = "bridge") -> list[str]:
    """All architecture names the registry knows for a backend."""
    return [a for spec in FAMILIES if spec.backend == backend for a in spec.architectures]


# ------------------------------------------------------------------------------------------
# which site acts on which scheme (the verbs' ``site="auto"``, and every "use site X" advice)

#: The intervention site of each scheme: what ``site="auto"`` picks (see ``default_site``).
SCHEME_SITE: dict[Scheme, str] = {
    Scheme.LEARNED: "pos_embed",
    Scheme.ROTARY: "rotary",
    Scheme.ALIBI: "alibi",
}

ERASER_ADVICE = "Use a residual-stream eraser: pe_hooks.fit_eraser(model, data)."

_SCHEME_ADVICE: dict[Scheme, str] = {
    Scheme.LEARNED: "Use site='pos_embed' (learned absolute positions).",
    Scheme.ROTARY: "Use site='rotary' (the rotary cos/sin tables).",
    Scheme.ALIBI: "Use site='alibi' (ALiBi biases in the attention scores).",
}


def default_site(family: FamilySpec) -> str | None:
    """The site ``site="auto"`` resolves to on a family (``None``: no explicit positional site)."""
    site = SCHEME_SITE.get(family.scheme)
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
    return f"site '{site}' has no per-head form on this model"
