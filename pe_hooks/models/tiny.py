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
