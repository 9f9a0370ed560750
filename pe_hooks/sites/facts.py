"""What a model's positional machinery really does, measured: the facts the registry describes.

``model_facts(model)`` runs a few forwards on six tokens, once per model (kept in a weak
dictionary here, nothing is stored on the model): one that records which positional hooks fire
(on which layers, with which shapes) and one per site with an edit that must change the logits if
the site takes edits (positions zeroed, tables set to no rotation, post-rotation queries zeroed,
noise added to the attention scores), and one that compares each bridge attention block with the
HF module it wraps (``pe_hooks.sites.fidelity``). Every hook is removed again, the model's train/eval mode and
torch's random state are restored, and gradients are off: the model is as it was.

With the HF config and rotary module (``RotaryFacts``) these are what a registry description
matches (``pe_hooks.sites.registry``): no architecture name is consulted.
"""

from __future__ import annotations

import re
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pe_hooks.core.types import Model, is_bridge
from pe_hooks.sites.fidelity import AttentionFidelity, attention_vs_hf
from pe_hooks.sites.relative import RelativeFacts, measure_relative
from pe_hooks.sites.tables import TABLE_HOOKS, TABLE_INPUTS, TableFacts, measure_table

#: the positional hook templates watched (``{i}``: a layer index)
WATCHED = (
    "hook_pos_embed", "pos_embed.hook_in", "decoder_pos_embed.hook_out", "decoder_pos_embed.hook_in", "rotary_emb.hook_cos", "rotary_emb.hook_sin",
    "blocks.{i}.attn.hook_cos", "blocks.{i}.attn.hook_sin", "blocks.{i}.attn.hook_rot_q", "blocks.{i}.attn.hook_rot_k",
    "blocks.{i}.attn.hook_q", "blocks.{i}.attn.hook_k", "blocks.{i}.attn.hook_q_normed", "blocks.{i}.attn.hook_k_normed",
    "blocks.{i}.attn.hook_attn_scores",
    "blocks.{i}.hook_resid_pre", "blocks.{i}.hook_resid_mid", "blocks.{i}.hook_resid_post",
    # encoder-decoder bridges name their stacks (no ``blocks.{i}`` alias): the encoder's residual and scores
    "encoder_blocks.{i}.hook_resid_pre", "encoder_blocks.{i}.hook_resid_mid", "encoder_blocks.{i}.hook_resid_post",
    "encoder_blocks.{i}.attn.hook_attn_scores",
)

#: edits whose effect on the logits says a site takes edits: site -> (templates, edit)
EDITS: dict[str, tuple[tuple[str, ...], Callable[[torch.Tensor], torch.Tensor]]] = {
    "pos_embed": (("hook_pos_embed",), torch.zeros_like),
    "decoder_pos_embed": (("decoder_pos_embed.hook_out",), torch.zeros_like),
    "rotary_top": (("rotary_emb.hook_cos",), torch.ones_like),
    "rotary_layer": (("blocks.{i}.attn.hook_cos",), torch.ones_like),
    "rot_qk": (("blocks.{i}.attn.hook_rot_q", "blocks.{i}.attn.hook_rot_k"), torch.zeros_like),
    "attn_scores": (("blocks.{i}.attn.hook_attn_scores",), lambda x: x + 3 * torch.randn_like(x)),
}
_ZERO_SIN = {"rotary_top": "rotary_emb.hook_sin", "rotary_layer": "blocks.{i}.attn.hook_sin"}


@dataclass(frozen=True)
class HookFacts:
    """Which positional hooks fire and take edits on one model (measured by ``model_facts``).

    Attributes:
        fires: template -> the layers it fired on (``(-1,)`` for a hook outside the blocks).
        shapes: template -> the shape of its first firing.
        order: template -> the rank of its first firing in the forward (0 = first).
        exists: templates the model has a hook point for (fired or not).
        takes_edits: sites (keys of ``EDITS``) whose edit changed the logits.
        scores_post_softmax: the attention-scores hook holds probabilities (rows sum to 1).
        causal: the attention of the first layer is masked above the diagonal.
        tables: table hook -> how the model indexes that absolute position table (learned or
            sinusoidal; ``pe_hooks.sites.tables``), for each table hook whose output is rows of it.
        relative: table hook -> the relative position bias it carries (T5; ``pe_hooks.sites.relative``).
        attention: each bridge attention block vs its own HF module on the same inputs
            (``pe_hooks.sites.fidelity``; ``None`` on TL 3.x or without wrapped attention).
        error: why the measuring forward failed (then nothing else is known).
    """

    fires: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    order: Mapping[str, int] = field(default_factory=dict)
    exists: frozenset[str] = frozenset()
    takes_edits: frozenset[str] = frozenset()
    scores_post_softmax: bool = False
    causal: bool = True
    tables: Mapping[str, TableFacts] = field(default_factory=dict)
    relative: Mapping[str, RelativeFacts] = field(default_factory=dict)
    attention: AttentionFidelity | None = None
    error: str | None = None

    def fire(self, template: str) -> bool:
        return template in self.fires

    def layers(self, template: str) -> tuple[int, ...]:
        return self.fires.get(template, ())

    def before(self, first: str, then: str) -> bool:
        """``first`` fires, and before ``then`` (in the first layer both fire on)."""
        return first in self.order and then in self.order and self.order[first] < self.order[then]


_CACHE: weakref.WeakKeyDictionary[Any, HookFacts] = weakref.WeakKeyDictionary()


def _names(model: Model, n_layers: int) -> dict[str, tuple[str, int]]:
    """hook name -> (template, layer) for every watched template the model has."""
    out: dict[str, tuple[str, int]] = {}
    hooks = model.hook_dict
    for tpl in WATCHED:
        for i in range(n_layers) if "{i}" in tpl else (-1,):
            name = tpl.replace("{i}", str(i))
            if name in hooks:
                out[name] = (tpl, i)
    return out


def _logits(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def _probe_ids(model: Model) -> torch.Tensor:
    vocab = int(getattr(model.cfg, "d_vocab", 0) or 0) or 64
    return (torch.tensor([[1, 40, 52, 61, 77, 90]]) % vocab).to(next(iter(model.parameters())).device)  # type: ignore[union-attr]


def _measure(model: Model) -> HookFacts:
    n_layers = int(model.cfg.n_layers)
    names = _names(model, n_layers)
    ids = _probe_ids(model)
    fired: dict[str, list[int]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    order: dict[str, int] = {}
    first_scores: list[torch.Tensor] = []
    seen: dict[str, torch.Tensor] = {}  # first output of each table hook and first input of its input hook

    def recorder(name: str) -> Callable[[torch.Tensor, Any], None]:
        tpl, i = names[name]

        def rec(x: torch.Tensor, hook: Any) -> None:
            order.setdefault(tpl, len(order))
            if i not in fired.setdefault(tpl, []):
                fired[tpl].append(i)
            if isinstance(x, torch.Tensor):
                shapes.setdefault(tpl, tuple(x.shape))
                if tpl in TABLE_HOOKS or tpl in TABLE_INPUTS.values():
                    seen.setdefault(tpl, x.detach())
                if tpl.endswith("hook_attn_scores") and not first_scores:
                    first_scores.append(x.detach().float())

        return rec

    base = _logits(model.run_with_hooks(ids, fwd_hooks=[(n, recorder(n)) for n in names]))
    takes: set[str] = set()
    for site, (templates, edit) in EDITS.items():
        pairs: list[tuple[str, Any]] = []
        for name, (tpl, _) in names.items():
            if tpl in templates and tpl in fired:
                pairs.append((name, lambda x, hook, e=edit: e(x)))
            elif _ZERO_SIN.get(site) == tpl and tpl in fired:
                pairs.append((name, lambda x, hook: torch.zeros_like(x)))
        if not pairs:
            continue
        out = _logits(model.run_with_hooks(ids, fwd_hooks=pairs))
        if float((out - base).abs().max()) > 1e-6 * (1 + float(base.abs().max())):
            takes.add(site)
    post, causal = False, True
    if first_scores:
        s = first_scores[0]
        post = bool((s >= 0).all() and (s <= 1).all() and torch.allclose(s.sum(-1), torch.ones(()), atol=1e-3))
        upper = torch.triu(torch.ones(s.shape[-2:], dtype=torch.bool), 1)
        above = s[..., upper]
        causal = bool((above == 0).all()) if post else bool((above <= torch.finfo(s.dtype).min / 2).all() or torch.isinf(above).all())
    tables = {h: f for h in TABLE_HOOKS if h in seen
              for f in [measure_table(model, h, seen[h], seen.get(TABLE_INPUTS[h]))] if f is not None}
    relative = {h: f for h in TABLE_HOOKS if h in seen
                for f in [measure_relative(model, h, seen[h], seen.get(TABLE_INPUTS[h]))] if f is not None}
    return HookFacts(
        fires={t: tuple(sorted(v)) for t, v in fired.items()}, shapes=shapes, order=order,
        exists=frozenset(t for t, _ in names.values()), takes_edits=frozenset(takes),
        scores_post_softmax=post, causal=causal, tables={h: t for h, t in tables.items() if h not in relative},
        relative=relative, attention=attention_vs_hf(model, ids),
    )


def model_facts(model: Model) -> HookFacts:
    """The measured ``HookFacts`` of ``model`` (once per model; the model is left as it was)."""
    got = _CACHE.get(model)
    if got is not None:
        return got
    training = bool(getattr(model, "training", False))
    modes = callable(getattr(model, "train", None))
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the model's own warnings on edited hooks: not the user's business here
            torch.manual_seed(0)
            model.eval()
            facts = _measure(model)
    except Exception as exc:  # any failure of the model's own forward: nothing is known
        facts = HookFacts(error=" ".join(f"{type(exc).__name__}: {exc}".split())[:300])
    finally:
        if modes:
            model.train(training)
    _CACHE[model] = facts
    return facts


# ------------------------------------------------------------------------------------------------
# the rotary module and the HF config

@dataclass(frozen=True)
class RotaryFacts:
    """What a bridge's HF config and rotary module say about its rotation.

    Attributes:
        rope_type: HF ``rope_type`` (``default``, ``linear``, ``llama3``, ``yarn``, ``longrope``,
            ``dynamic``...).
        adjacent_pairs: q/k dims ``(2i, 2i+1)`` rotate together (else ``(i, i + d/2)``).
        repeated_tables: the tables hold each band twice in a row (``repeat_interleave``).
        complex_tables: the rotary module returns one complex tensor (DeepSeek-V2 ``freqs_cis``).
        no_rope_layers: layers the config marks as not rotating (NoPE), if it says.
        has_inv_freq: the rotary module has an ``inv_freq`` buffer for every layer (``inv_freq`` or
            ``{layer_type}_inv_freq``) that pe-hooks can read.
    """

    rope_type: str = "default"
    adjacent_pairs: bool = False
    repeated_tables: bool = False
    complex_tables: bool = False
    no_rope_layers: tuple[int, ...] = ()
    has_inv_freq: bool = True


def _rope_type(hf_cfg: Any) -> str:
    params = getattr(hf_cfg, "rope_parameters", None)
    if isinstance(params, dict):
        if "rope_type" in params:
            return str(params["rope_type"])
        types = {str(v.get("rope_type", "default")) for v in params.values() if isinstance(v, dict)}
        non_default = sorted(types - {"default"})
        return non_default[0] if non_default else "default"
    scaling = getattr(hf_cfg, "rope_scaling", None)
    return str(scaling.get("rope_type", scaling.get("type", "default"))) if isinstance(scaling, dict) else "default"


def _hooked_rope_type(cfg: Any) -> str:
    """TL 3's rotary scaling options as the HF ``rope_type`` they implement."""
    if getattr(cfg, "use_dynamic_ntk_rope", False):
        return "dynamic"  # Qwen-1: the base grows with the key length
    if getattr(cfg, "use_NTK_by_parts_rope", False):
        return "llama3"  # Llama-3.1 NTK-by-parts
    if getattr(cfg, "use_yarn_rope", False):
        return "yarn"
    return "linear" if float(getattr(cfg, "rotary_scaling_factor", 1.0) or 1.0) != 1.0 else "default"


def _no_rope_layers(hf_cfg: Any, n_layers: int) -> tuple[int, ...]:
    flags = getattr(hf_cfg, "no_rope_layers", None)  # SmolLM3, Llama-4: 1 = rotates, 0 = NoPE
    if isinstance(flags, (list, tuple)) and len(flags) >= n_layers:
        return tuple(i for i in range(n_layers) if not flags[i])
    return ()


def rotary_facts(model: Model) -> RotaryFacts:
    """``RotaryFacts`` of a bridge (from its HF config and rotary module) or a TL 3.x model."""
    cfg = model.cfg
    if not is_bridge(model):
        return RotaryFacts(rope_type=_hooked_rope_type(cfg), adjacent_pairs=bool(getattr(cfg, "rotary_adjacent_pairs", False)))
    hf_cfg = model.original_model.config
    rot = getattr(getattr(model, "rotary_emb", None), "original_component", None)
    buffers = [n for n, _ in rot.named_buffers()] if rot is not None else []
    complex_tables = rot is not None and re.search(r"complex|cis", type(rot).__name__ + " ".join(buffers), re.I) is not None
    return RotaryFacts(
        rope_type=_rope_type(hf_cfg),
        adjacent_pairs=bool(getattr(cfg, "rotary_adjacent_pairs", False) or getattr(cfg, "rotary_interleaved_cos_sin", False)
                            or getattr(hf_cfg, "rope_interleave", False)),
        repeated_tables=bool(getattr(cfg, "rotary_interleaved_cos_sin", False)),
        complex_tables=bool(complex_tables),
        no_rope_layers=_no_rope_layers(hf_cfg, int(cfg.n_layers)),
        has_inv_freq=_has_layer_inv_freq(buffers, hf_cfg),
    )


def _has_layer_inv_freq(buffers: list[str], hf_cfg: Any) -> bool:
    """The rotary module has the frequencies of every layer where ``rotary_frequencies`` reads
    them: ``inv_freq``, or ``{layer_type}_inv_freq`` for each of the config's layer types (not,
    e.g., DeepSeek-V4's ``main_``/``compress_inv_freq``, which no layer type names)."""
    if "inv_freq" in buffers:
        return True
    types = set(getattr(hf_cfg, "layer_types", None) or ())
    return bool(types) and all(f"{t}_inv_freq" in buffers for t in types)
