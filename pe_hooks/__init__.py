"""pe-hooks: remove positional information from transformer activations, and measure what is left.

Where position lives (``inspect``), hooks that zero/remove/replace/project it out, fitted
residual-stream erasers, per-layer probes, and UMAP of generation branches — all as plain
TransformerLens ``(name, fn)`` hooks.
"""

from pe_hooks.errors import DataError, ModelLoadError, PeHooksError, SchemeError
from pe_hooks.models import DEFAULT_MODEL, bridge_from_hf, load_hf, load_model
from pe_hooks.sites import PositionalScheme, Scheme, inspect

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "DataError",
    "ModelLoadError",
    "PeHooksError",
    "PositionalScheme",
    "Scheme",
    "SchemeError",
    "__version__",
    "bridge_from_hf",
    "inspect",
    "load_hf",
    "load_model",
]
