"""Where position lives in a model: the family registry, ``inspect`` and position decoding."""

from pe_hooks.sites.inspect import inspect, rotary_frequencies
from pe_hooks.sites.registry import AlibiForm, FamilySpec, RotaryLayout, Scheme
from pe_hooks.sites.scheme import PositionalScheme

__all__ = [
    "AlibiForm",
    "FamilySpec",
    "PositionalScheme",
    "RotaryLayout",
    "Scheme",
    "inspect",
    "rotary_frequencies",
]
