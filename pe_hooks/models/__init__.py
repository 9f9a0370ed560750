"""Loading models: offline real weights, seeded tiny models, and pass-through hub names."""

from pe_hooks.models.kv_check import KVCacheCheck, check_kv_cache, require_kv_cache
from pe_hooks.models.load import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    bridge_from_hf,
    load_hf,
    load_model,
    tiny_tokenizer,
)

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "KVCacheCheck",
    "bridge_from_hf",
    "check_kv_cache",
    "load_hf",
    "load_model",
    "require_kv_cache",
    "tiny_tokenizer",
]
