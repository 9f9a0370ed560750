"""Where position lives in a model: the family registry and ``inspect``."""

from pe_hooks.sites.inspect import family_of, inspect, rotary_frequencies
from pe_hooks.sites.registry import FAMILIES, AlibiForm, FamilySpec, RotaryLayout, Scheme
from pe_hooks.sites.scheme import PositionalScheme

__all__ = [
    "FAMILIES",
    "AlibiForm",
    "FamilySpec",
    "PositionalScheme",
    "RotaryLayout",
    "Scheme",
    "family_of",
    "inspect",
    "rotary_frequencies",
]
