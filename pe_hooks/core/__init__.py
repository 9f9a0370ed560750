"""The foundation every other layer builds on: types, errors, ``HookList`` / ``apply_hooks``.

Nothing in ``pe_hooks.core`` imports another ``pe_hooks`` package (the import contract in
``pyproject.toml`` enforces it).
"""

from pe_hooks.core.errors import (
    ArgumentError,
    ArtefactError,
    DataError,
    FitMismatchWarning,
    HookListError,
    HookPointError,
    ModelLoadError,
    ModelMismatchError,
    PeHooksError,
    PeHooksWarning,
    RangeError,
    SchemeError,
    UpstreamError,
    UpstreamWarning,
)
from pe_hooks.core.hooklist import HookList, apply_hooks
from pe_hooks.core.types import HookFn, HookPair, Model, is_bridge, is_model

__all__ = [
    "ArgumentError",
    "ArtefactError",
    "DataError",
    "FitMismatchWarning",
    "HookFn",
    "HookList",
    "HookListError",
    "HookPair",
    "HookPointError",
    "Model",
    "ModelLoadError",
    "ModelMismatchError",
    "PeHooksError",
    "PeHooksWarning",
    "RangeError",
    "SchemeError",
    "UpstreamError",
    "UpstreamWarning",
    "apply_hooks",
    "is_bridge",
    "is_model",
]
