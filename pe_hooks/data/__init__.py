"""Data: the embedded corpus, token sequences with real positions, activation streaming."""

from pe_hooks.data.corpus import stdlib_docstrings
from pe_hooks.data.stream import ActivationBatch, stream_activations
from pe_hooks.data.tokens import TokenData, load_data, positions_from_mask, tokenize_texts

__all__ = [
    "ActivationBatch",
    "TokenData",
    "load_data",
    "positions_from_mask",
    "stdlib_docstrings",
    "stream_activations",
    "tokenize_texts",
]
