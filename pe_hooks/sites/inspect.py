"""``inspect(model)``: read a model's positional sites from the family registry.

The only model-specific logic is in ``pe_hooks.sites.registry``; this module turns a family spec
plus the model's config into a ``PositionalScheme`` with concrete hook names.
"""

from __future__ import annotations

from typing import Any

import torch

from pe_hooks.core.errors import ArgumentError, SchemeError
from pe_hooks.core.types import Model, is_bridge, is_model
from pe_hooks.sites.alibi_bias import alibi_facts
from pe_hooks.sites.facts import RotaryFacts, model_facts, rotary_facts
from pe_hooks.sites.registry import STILL_WORKS, FamilySpec, Scheme, describe, residual_only
from pe_hooks.sites.scheme import RESID_SITES, PositionalScheme
from pe_hooks.sites.tables import hidden_fixed_table, position_table


def _architecture(model: Model) -> tuple[str, str]:
    if is_bridge(model):
        return type(model.original_model).__name__, "bridge"
    # TL 3.x HookedTransformer: the original HF architecture, for messages only
    return str(getattr(model.cfg, "original_architecture", None) or "unknown"), "hooked"


_POS_TYPES = {"standard": Scheme.LEARNED, "rotary": Scheme.ROTARY, "alibi": Scheme.ALIBI, "sinusoidal": Scheme.SINUSOIDAL,
              "relative_positional_bias": Scheme.RELATIVE}


def scheme_of(model: Model) -> Scheme:
    """The positional scheme: a bridge with a rotary module is rotary; otherwise TransformerLens's
    ``cfg.positional_embedding_type`` (``standard`` = learned absolute)."""
    if is_bridge(model) and getattr(getattr(model, "rotary_emb", None), "original_component", None) is not None:
        return Scheme.ROTARY
    scheme = _POS_TYPES.get(str(getattr(model.cfg, "positional_embedding_type", "") or ""), Scheme.NONE)
    if scheme is Scheme.LEARNED and is_bridge(model):
        table = position_table(model)
        if table is not None and not (isinstance(table, torch.nn.Parameter) and table.requires_grad):
            return Scheme.SINUSOIDAL  # a fixed table (a buffer, or a frozen parameter): sinusoidal
        if table is None and hidden_fixed_table(model) is not None:
            return Scheme.SINUSOIDAL  # a fixed table inside the HF model that no hook wraps (XGLM)
    return scheme


def _n_bands(model: Model, scheme: Scheme, rot: RotaryFacts | None) -> int | None:
    if scheme is not Scheme.ROTARY or rot is None or not rot.has_inv_freq:
        return None
    try:
        return int(rotary_frequencies(model, 0)[0].numel())
    except SchemeError:
        return None


def family_of(model: Model) -> FamilySpec:
    """The registry's description of ``model`` (from its measured facts). One that fits none is
    refused: a ``residual only`` family (``FamilySpec.refused`` holds the message naming the
    architecture, the reason and what still works), or a ``SchemeError`` with that message when
    not even its residual hooks fire (its forward failed)."""
    if not is_model(model):
        raise ArgumentError(
            f"expected a TransformerBridge or HookedTransformer, got {type(model).__name__}; "
            "load one with pe_hooks.load_model(name)"
        )
    arch, backend = _architecture(model)
    scheme = scheme_of(model)
    rot = rotary_facts(model) if scheme is Scheme.ROTARY else None
    facts = model_facts(model)
    alibi = alibi_facts(model) if scheme is Scheme.ALIBI else None
    spec, reason = describe(backend, scheme, facts, rot, _n_bands(model, scheme, rot), alibi)
    if spec is None:
        head = f"pe-hooks cannot edit the positions of architecture '{arch}' ({backend}, {scheme.value} positions): {reason}"
        spec = residual_only(backend, scheme, facts, f"{head}. {STILL_WORKS}.")
        if spec is None and facts.error:
            raise SchemeError(f"{head}. {STILL_WORKS} where its forward runs.")
        if spec is None:
            raise SchemeError(f"{head}; and no blocks.*.hook_resid_pre/mid/post fires on it, so residual erasers and "
                              "probes do not apply either")
    return spec


def _hf_config(model: Model) -> Any:
    return model.original_model.config if is_bridge(model) else None


def _rope_theta(hf_cfg: Any, layer_type: str | None) -> float:
    params = getattr(hf_cfg, "rope_parameters", None)
    if isinstance(params, dict):
        if layer_type is not None and isinstance(params.get(layer_type), dict):
            return float(params[layer_type]["rope_theta"])
        if "rope_theta" in params:
            return float(params["rope_theta"])
    return float(getattr(hf_cfg, "rope_theta", 10000.0))


def _layer_types(model: Model) -> list[str | None]:
    hf_cfg = _hf_config(model)
    n = int(model.cfg.n_layers)
    types = getattr(hf_cfg, "layer_types", None) if hf_cfg is not None else None
    params = getattr(hf_cfg, "rope_parameters", None) if hf_cfg is not None else None
    if types and isinstance(params, dict) and all(t in params for t in types):
        return list(types)
    return [None] * n


def rotary_frequencies(model: Model, layer: int) -> tuple[torch.Tensor, float]:
    """``(inv_freq, attention_scaling)`` that layer ``layer`` of a rotary model really uses.

    Read from the HF rotary module's buffers (so rope-scaling variants such as Llama-3 or YaRN
    are exact) on a bridge; on TL 3, from the table each attention module builds (its own base,
    ``rotary_base_local`` on local layers, NTK-by-parts, YaRN, linear scaling).
    """
    if is_bridge(model):
        rot = getattr(model, "rotary_emb", None)
        hf_rot = getattr(rot, "original_component", None)
        if hf_rot is None:
            raise SchemeError(f"{type(model.original_model).__name__} has no rotary embedding module")
        layer_type = _layer_types(model)[layer]
        if layer_type is not None and hasattr(hf_rot, f"{layer_type}_inv_freq"):
            inv = getattr(hf_rot, f"{layer_type}_inv_freq")
            scaling = float(getattr(hf_rot, f"{layer_type}_attention_scaling", 1.0))
        elif isinstance(getattr(hf_rot, "inv_freq", None), torch.Tensor):
            inv = hf_rot.inv_freq
            scaling = float(getattr(hf_rot, "attention_scaling", 1.0))
        else:
            raise SchemeError(f"{type(hf_rot).__name__} has no inv_freq buffer for layer {layer}: pe-hooks cannot read "
                              "its rotary frequencies")
        return inv.detach().float().clone(), scaling
    return _hooked_frequencies(model, layer)


def _hooked_base(model: Model, layer: int) -> float:
    """TL 3: the base layer ``layer`` builds its table with (``rotary_base_local`` on local layers)."""
    attn = model.blocks[layer].attn
    own = getattr(attn, "_rotary_base", None)
    return float(own() if callable(own) else model.cfg.rotary_base)


def _hooked_frequencies(model: Model, layer: int) -> tuple[torch.Tensor, float]:
    """TL 3: the angles of position 1 in the table layer ``layer`` builds with its own
    ``calculate_sin_cos_rotary`` (its base, NTK-by-parts, YaRN or linear scaling included), in float64:
    what its ``rotary_cos``/``rotary_sin`` buffers hold, at full precision."""
    cfg = model.cfg
    dim = int(cfg.rotary_dim)
    attn = model.blocks[layer].attn
    build = getattr(attn, "calculate_sin_cos_rotary", None)
    if not callable(build):  # an older TL 3 without it: plain RoPE from the config
        inv = 1.0 / (_hooked_base(model, layer) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        return inv.float(), 1.0
    sin, cos = build(dim, 2, base=_hooked_base(model, layer), dtype=torch.float64)
    cols = slice(0, dim, 2) if getattr(cfg, "rotary_adjacent_pairs", False) else slice(0, dim // 2)
    inv = torch.atan2(sin[1, cols].double(), cos[1, cols].double())  # every angle < pi: inv <= 1
    return inv.float(), float(cos[0, 0])


def _rotating_layers(model: Model, spec: FamilySpec, n_layers: int) -> tuple[int, ...]:
    """Layers whose q/k rotate: where the per-layer tables fire (bridge) or every layer (TL 3),
    minus the layers the HF config marks as NoPE."""
    facts = model_facts(model)
    fired = facts.layers("blocks.{i}.attn.hook_cos") if spec.rotary_cos_sin else facts.layers("blocks.{i}.attn.hook_rot_q")
    nope = set(rotary_facts(model).no_rope_layers)
    return tuple(i for i in (fired or range(n_layers)) if i >= 0 and i not in nope)


def _resid_names(spec: FamilySpec, n_layers: int) -> dict[str, tuple[str, ...]]:
    return {
        site: tuple(f"{spec.resid_prefix}.{i}.hook_{site}" for i in range(n_layers))
        for site in RESID_SITES
        if site in spec.resid_sites
    }


def inspect(model: Model) -> PositionalScheme:
    """Describe the positional sites of ``model`` (a TransformerBridge or HookedTransformer).

    Only hooks that fire during a forward pass *and* whose edits reach the output are listed
    as intervention sites; hooks that exist but never fire are listed in ``never_fire``.
    Print the result (or run ``pe-hooks inspect MODEL``) for a readable summary. On a model
    pe-hooks refuses, ``scheme.refused`` says why and the scheme lists only the residual sites
    (the positional verbs raise that message; erasers, probes and residual ``project_out`` work).

    Raises:
        SchemeError: not even the residual hooks fire (the model's forward failed).
    """
    spec = family_of(model)
    cfg = model.cfg
    n_layers = int(cfg.n_layers)
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    d_head = int(cfg.d_head)
    L = range(n_layers)
    kw: dict[str, Any] = {}
    if spec.scheme in (Scheme.LEARNED, Scheme.SINUSOIDAL) and spec.pos_embed_fires:
        kw["pos_embed"] = "hook_pos_embed"
        kw["pos_ids_hook"] = spec.pos_ids_hook
        w_pos = (position_table(model) if spec.tables else None)
        w_pos = model.W_pos if w_pos is None else w_pos
        off = spec.tables[0].offset if spec.tables else 0
        kw["w_pos_shape"] = (int(w_pos.shape[0]) - off, int(w_pos.shape[1]))
    if spec.scheme is Scheme.ROTARY and not spec.refused:
        if spec.rotary_cos_sin:
            kw["rotary_cos"] = "rotary_emb.hook_cos"
            kw["rotary_sin"] = "rotary_emb.hook_sin"
            kw["layer_cos"] = tuple(f"blocks.{i}.attn.hook_cos" for i in L)
            kw["layer_sin"] = tuple(f"blocks.{i}.attn.hook_sin" for i in L)
        if spec.rot_qk_fire:
            kw["rot_q"] = tuple(f"blocks.{i}.attn.hook_rot_q" for i in L)
            kw["rot_k"] = tuple(f"blocks.{i}.attn.hook_rot_k" for i in L)
            facts = model_facts(model)
            for w in ("q", "k"):  # q/k normed before the rotation (Qwen3, Gemma-3, OLMo-2...): rotate the normed ones
                normed = facts.before(f"blocks.{{i}}.attn.hook_{w}_normed", f"blocks.{{i}}.attn.hook_rot_{w}")
                kw[f"pre_rot_{w}"] = tuple(f"blocks.{i}.attn.hook_{w}" + ("_normed" if normed else "") for i in L)
        kw["rotary_layers"] = _rotating_layers(model, spec, n_layers)
        kw["rope_type"] = rotary_facts(model).rope_type
        inv0, _ = rotary_frequencies(model, kw["rotary_layers"][0] if kw["rotary_layers"] else 0)
        kw["rotary_dim"] = 2 * int(inv0.numel())
        if is_bridge(model):
            hf_cfg = _hf_config(model)
            kw["rotary_base"] = tuple(_rope_theta(hf_cfg, t) for t in _layer_types(model))
        else:
            kw["rotary_base"] = tuple(_hooked_base(model, i) for i in L)
    never = tuple(t.replace("{i}", "*") for t in spec.never_fire)
    name = getattr(cfg, "model_name", None) or type(model).__name__
    arch, _ = _architecture(model)
    return PositionalScheme(
        model_name=str(name),
        architecture=arch,
        family=spec,
        n_layers=n_layers,
        d_model=int(cfg.d_model),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=d_head,
        n_ctx=int(cfg.n_ctx),
        prepend_bos=bool(getattr(cfg, "default_prepend_bos", True)),
        attn_scores=() if spec.refused else tuple(f"{spec.resid_prefix}.{i}.attn.hook_attn_scores" for i in L),
        resid=_resid_names(spec, n_layers),
        never_fire=never,
        **kw,
    )
