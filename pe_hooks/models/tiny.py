"""Seeded random-init small models, one per positional family, for tests and offline trials.

Each is built from a HF config with a local byte-level tokenizer; the same name and seed give
bit-identical weights, so a test can build one copy for the bridge and another, edited by hand,
as an independent reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)

TINY_CTX = 256
TINY_D = 64
TINY_LAYERS = 2
TINY_HEADS = 4


@dataclass(frozen=True)
class TinySpec:
    """How to build one tiny model: its HF class, a config factory, and the tokenizer kind."""

    model_class: type[PreTrainedModel]
    config: Callable[[int, dict[str, int]], PretrainedConfig]
    masked: bool = False


def _ids(special: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in special.items() if k in ("bos_token_id", "eos_token_id", "pad_token_id")}


TINY_MODELS: dict[str, TinySpec] = {
    "tiny-gpt2": TinySpec(
        GPT2LMHeadModel,
        lambda v, s: GPT2Config(
            vocab_size=v,
            n_positions=TINY_CTX,
            n_embd=TINY_D,
            n_layer=TINY_LAYERS,
            n_head=TINY_HEADS,
            **_ids(s),
        ),
    ),
    "tiny-neox": TinySpec(
        GPTNeoXForCausalLM,
        lambda v, s: GPTNeoXConfig(
            vocab_size=v,
            max_position_embeddings=TINY_CTX,
            hidden_size=TINY_D,
            num_hidden_layers=TINY_LAYERS,
            num_attention_heads=TINY_HEADS,
            intermediate_size=4 * TINY_D,
            rotary_pct=0.5,
            **_ids(s),
        ),
    ),
    "tiny-llama": TinySpec(
        LlamaForCausalLM,
        lambda v, s: LlamaConfig(
            vocab_size=v,
            max_position_embeddings=TINY_CTX,
            hidden_size=TINY_D,
            num_hidden_layers=TINY_LAYERS,
            num_attention_heads=TINY_HEADS,
            num_key_value_heads=2,
            intermediate_size=4 * TINY_D,
            rope_theta=10000.0,
            **_ids(s),
        ),
    ),
    "tiny-bloom": TinySpec(
        BloomForCausalLM,
        lambda v, s: BloomConfig(
            vocab_size=v,
            hidden_size=TINY_D,
            n_layer=TINY_LAYERS,
            n_head=TINY_HEADS,
            **_ids(s),
        ),
    ),
    "tiny-bert": TinySpec(
        BertForMaskedLM,
        lambda v, s: BertConfig(
            vocab_size=v,
            max_position_embeddings=TINY_CTX,
            hidden_size=TINY_D,
            num_hidden_layers=TINY_LAYERS,
            num_attention_heads=TINY_HEADS,
            intermediate_size=4 * TINY_D,
            **_ids(s),
        ),
        masked=True,
    ),
}


def build_tiny(name: str, vocab_size: int, special_ids: dict[str, int], seed: int = 0) -> PreTrainedModel:
    """Build the seeded random-init HF model ``name`` (a key of ``TINY_MODELS``), in eval mode."""
    spec = TINY_MODELS[name]
    config = spec.config(vocab_size, special_ids)
    config.architectures = [spec.model_class.__name__]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.model_class(config)
    return model.eval()


# ------------------------------------------------------------------------------------------------
# any TransformerLens 4.3 architecture name: a tiny random-init instance from its transformers config

#: the shape every tiny architecture gets (where its config has the field): 4 layers (so every-4th
#: NoPE and sliding patterns have one of each), 4 query heads sharing 2 key heads (GQA, not the
#: default of most configs), head size 16, small MoE/MLA/linear-attention parts.
ARCH_SHAPE: dict[str, int | float | bool] = {
    "hidden_size": TINY_D, "n_embd": TINY_D, "d_model": TINY_D,
    "num_hidden_layers": 4, "n_layer": 4, "num_layers": 4,
    "num_attention_heads": TINY_HEADS, "n_head": TINY_HEADS,
    "num_key_value_heads": 2, "num_kv_heads": 2, "head_dim": 16,
    "intermediate_size": 128, "ffn_hidden_size": 128, "n_inner": 128, "intermediate_size_mlp": 128,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "n_shared_experts": 1,
    "num_experts_per_tok": 2, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
    "kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16,
    "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
    "max_position_embeddings": TINY_CTX, "n_positions": TINY_CTX, "n_ctx": TINY_CTX,
    "sliding_window": 8, "attention_chunk_size": 8, "tie_word_embeddings": False,
    "num_mtp_layers": 0, "rotary_dim": 8, "hidden_size_per_layer_input": 16,
    # encoder-decoder models: equal stacks (TL 4.3 adapters need them): 2 + 2 layers (BART-like), 4 + 4 (T5-like)
    "encoder_layers": 2, "decoder_layers": 2, "num_decoder_layers": 4, "encoder_attention_heads": TINY_HEADS,
    "decoder_attention_heads": TINY_HEADS, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
    "num_heads": TINY_HEADS, "d_kv": 16, "d_ff": 128, "attention_window": 4,
    # relative position bias (T5): 8 buckets up to distance 20 (exact and log buckets within 12 tokens)
    "relative_attention_num_buckets": 8, "relative_attention_max_distance": 20, "local_radius": 3, "global_block_size": 4,
}

#: per-name fixes a generic tiny config needs (data: config fields by architecture name)
ARCH_OVERRIDES: dict[str, dict[str, object]] = {
    # 4 layers: global, local, global, local; a local window shorter than the 12-token checks
    "GPTNeoForCausalLM": {"attention_types": [[["global", "local"], 2]], "window_size": 5},
    # the default decoder start id (58100) is outside a tiny vocabulary
    "MarianMTModel": {"decoder_start_token_id": 2},
    # 6 heads (not a power of two: MPT's slopes differ from BLOOM's), 16 wide
    "MptForCausalLM": {"n_heads": 6, "d_model": 96, "n_layers": 4, "max_seq_len": 256},
    # no positional encoding: Mamba-2 needs num_heads * head_dim = expand * hidden_size
    "Mamba2ForCausalLM": {"num_heads": 8, "head_dim": 16, "n_groups": 1},
    # Jamba: attention on layers 1 and 3 (the default period 8 leaves 4 layers without any)
    # Zamba2: 4 layers, a shared attention block on layer 1 (no rotary: use_mem_rope False), mamba heads of 16
    "Zamba2ForCausalLM": {"layers_block_type": ["linear_attention", "hybrid", "linear_attention", "linear_attention"],
                          "hybrid_layer_ids": [1], "mamba_headdim": 16, "n_mamba_heads": 8, "mamba_d_state": 16,
                          "attention_head_dim": 32, "attention_hidden_size": 128},
    # Falcon-H1: its mamba mixer is full-size by default (d_ssm 1024, 128 heads, state 256, chunks of 256: ~3 s a forward)
    "FalconH1ForCausalLM": {"mamba_d_ssm": 128, "mamba_n_heads": 8, "mamba_d_head": 16, "mamba_d_state": 16,
                            "mamba_chunk_size": 16},
    "JambaForCausalLM": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1},
}

#: config variants a name can ask for with ``NAME+VARIANT`` beside the rotary ones (``FalconForCausalLM+alibi``)
CONFIG_VARIANTS: dict[str, dict[str, object]] = {
    "alibi": {"alibi": True},
}

#: rotary scaling variants a name can ask for with ``NAME+VARIANT`` (e.g. ``LlamaForCausalLM+yarn``)
ROPE_VARIANTS: dict[str, dict[str, object]] = {
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
}


class ArchBuildError(RuntimeError):
    """A TransformerLens architecture name has no tiny offline build here (the reason is the message)."""


def _model_class(name: str) -> type[PreTrainedModel]:
    import transformers

    cls = getattr(transformers, name, None)
    if cls is None:
        raise ArchBuildError(f"no class {name} in transformers {transformers.__version__} (remote code or TL-native)")
    return cls  # type: ignore[no-any-return]


def arch_config(name: str, vocab_size: int = 320, special_ids: dict[str, int] | None = None) -> PretrainedConfig:
    """A tiny config of TransformerLens architecture ``name`` (``NAME`` or ``NAME+VARIANT`` with a
    ``ROPE_VARIANTS`` key): ``ARCH_SHAPE`` where the config class has the field, and a partial
    rotary factor that is not the class's default (0.5, or 0.25 where the default is 0.5)."""
    import inspect as _inspect

    base, _, variant = name.partition("+")
    cls = _model_class(base)
    cfg_cls = cls.config_class
    if cfg_cls is None:
        raise ArchBuildError(f"{base} has no config class")
    default = cfg_cls()
    if hasattr(default, "text_config") and not hasattr(default, "hidden_size"):
        raise ArchBuildError(f"{base} is a multimodal wrapper (text_config): no tiny text-only build")
    if hasattr(default, "encoder") and hasattr(default, "decoder") and not hasattr(default, "hidden_size"):
        raise ArchBuildError(f"{base} nests its encoder and decoder configs: no tiny build here (the full-size "
                             "default would be built)")
    fields = set(_inspect.signature(cfg_cls.__init__).parameters) | set(default.to_dict())
    kw: dict[str, object] = {k: v for k, v in ARCH_SHAPE.items() if k in fields}
    if "qk_rope_head_dim" in kw and "head_dim" in kw:  # multi-head latent attention: head_dim is the rotary part
        kw["head_dim"] = kw["qk_rope_head_dim"]
    if "kv_lora_rank" in kw and "num_key_value_heads" in kw:  # MLA: every head has its own latent keys
        kw["num_key_value_heads"] = kw.get("num_attention_heads", TINY_HEADS)
    kw["vocab_size"] = vocab_size
    if "vocab_size_per_layer_input" in fields:  # Gemma-4's per-layer token embeddings (262144 rows by default)
        kw["vocab_size_per_layer_input"] = vocab_size
    kw.update(special_ids or {})
    if "pad_token_id" in kw and getattr(default, "decoder_start_token_id", None) == kw["pad_token_id"] and "eos_token_id" in kw:
        kw["decoder_start_token_id"] = kw["eos_token_id"]  # a decoder starting on a pad token (M2M100 numbers it -1)
    kw.update(ARCH_OVERRIDES.get(base, {}))
    rope = dict(getattr(default, "rope_parameters", None) or {})
    if rope and all(isinstance(v, dict) for v in rope.values()):
        rope = {}  # per-layer-type parameters (Gemma-3 style): keep the class's own
    if rope:
        if "partial_rotary_factor" in rope:
            rope["partial_rotary_factor"] = 0.25 if float(rope["partial_rotary_factor"]) == 0.5 else 0.5
        if variant and variant not in CONFIG_VARIANTS:
            rope = {"rope_theta": rope.get("rope_theta", 10000.0), **ROPE_VARIANTS[variant],
                    **({"partial_rotary_factor": rope["partial_rotary_factor"]} if "partial_rotary_factor" in rope else {})}
        if rope.get("original_max_position_embeddings"):
            rope["original_max_position_embeddings"] = min(int(rope["original_max_position_embeddings"]), 64)  # type: ignore[call-overload]
        kw["rope_parameters"] = rope
    elif variant and variant not in CONFIG_VARIANTS:
        raise ArchBuildError(f"{base} has no rope_parameters: no '{variant}' variant")
    if variant in CONFIG_VARIANTS:
        kw.update(CONFIG_VARIANTS[variant])
    try:
        config = cfg_cls(**kw)
    except Exception as exc:  # a config class with constraints the generic shape breaks
        raise ArchBuildError(f"config failed: {type(exc).__name__}: {exc}"[:200]) from exc
    config.architectures = [base]
    return config


def build_arch(name: str, vocab_size: int = 320, special_ids: dict[str, int] | None = None, seed: int = 0) -> PreTrainedModel:
    """The seeded random-init HF model of ``arch_config(name)`` (eval mode, eager attention)."""
    config = arch_config(name, vocab_size, special_ids)
    cls = _model_class(name.partition("+")[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = cls(config)
        except Exception as exc:
            raise ArchBuildError(f"HF build failed: {type(exc).__name__}: {exc}"[:200]) from exc
    model.set_attn_implementation("eager")
    return model.eval()
