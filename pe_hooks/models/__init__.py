"""Loading models: offline real weights, seeded tiny models, and pass-through hub names."""

from pe_hooks.models.load import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    bridge_from_hf,
    load_hf,
    load_model,
    tiny_tokenizer,
)

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "bridge_from_hf", "load_hf", "load_model", "tiny_tokenizer"]
