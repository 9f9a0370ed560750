"""Exceptions raised by pe-hooks. Every message names the fix."""

from __future__ import annotations


class PeHooksError(Exception):
    """Base class of every error pe-hooks raises on purpose."""


class ModelLoadError(PeHooksError):
    """A model name could not be resolved or loaded (unknown name, missing package, no hub)."""


class SchemeError(PeHooksError, ValueError):
    """An intervention does not apply to the model's positional scheme or site."""


class DataError(PeHooksError, ValueError):
    """Input data is empty, has NaNs, is too long for the context, or has the wrong labels."""
