"""What to do to position: the verbs ``zero``, ``remove``, ``replace``, ``project_out``,
their ``HookList`` container, and position maps for ``replace``."""

from pe_hooks.interventions.hooklist import HookList, apply_hooks
from pe_hooks.interventions.positions import (
    PositionMap,
    constant,
    reverse,
    scale,
    shift,
    shuffle,
    table,
)
from pe_hooks.interventions.verbs import project_out, remove, replace, zero

__all__ = [
    "HookList",
    "PositionMap",
    "apply_hooks",
    "constant",
    "project_out",
    "remove",
    "replace",
    "reverse",
    "scale",
    "shift",
    "shuffle",
    "table",
    "zero",
]
