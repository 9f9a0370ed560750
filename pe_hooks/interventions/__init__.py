"""What to do to position: the verbs ``zero``, ``remove``, ``replace``, ``project_out``, the
position maps for ``replace``, and ``frequency_bands`` for the rotary ``bands=`` options."""

from pe_hooks.interventions.positions import (
    PositionMap,
    constant,
    reverse,
    scale,
    shift,
    shuffle,
    table,
)
from pe_hooks.interventions.rotary_bands import frequency_bands
from pe_hooks.interventions.verbs import project_out, remove, replace, zero

__all__ = [
    "PositionMap",
    "constant",
    "frequency_bands",
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
