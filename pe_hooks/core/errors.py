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


class UpstreamError(PeHooksError, RuntimeError):
    """An installed dependency misbehaves (e.g. a TransformerLens/transformers pair whose KV-cache
    decoding is wrong); the message names the tested versions to install."""


class PeHooksWarning(UserWarning):
    """Base class of every warning pe-hooks emits; the message names the fix."""


class UpstreamWarning(PeHooksWarning):
    """A dependency misbehaves and pe-hooks works around it (the message names the fix)."""


class ArgumentError(PeHooksError, ValueError, TypeError):
    """An argument has the wrong type or value (a non-integer layer, ``k=0``, ``n_bins=1``...)."""


class RangeError(PeHooksError, IndexError):
    """An index (layer, head, band, position, token id) lies outside what the model has."""


class NegativePositionError(RangeError, DataError):
    """A given token position is below 0: out of range, and bad data."""


class ArtefactError(DataError):
    """A saved artefact (eraser, sweep result, output folder) is missing, incomplete, corrupt, of
    another format version, or cannot be written where asked."""


class ModelMismatchError(SchemeError):
    """Hooks or an eraser built from one model were used on another one."""


class HookPointError(PeHooksError, KeyError):
    """A hook point name does not exist on the model (or was not collected)."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class HookListError(PeHooksError, TypeError):
    """Something that is not a list of ``(hook_name, fn)`` pairs was combined with a ``HookList``."""


class FitMismatchWarning(PeHooksWarning):
    """A fitted eraser is applied to a distribution it was not fitted on (e.g. an eraser fitted
    layer by layer on clean states, applied inside the model at every layer at once)."""


class UnderfitWarning(PeHooksWarning):
    """An eraser was fitted on fewer tokens than the model's width: it is mostly estimation noise
    (position stays decodable out of sample); the message names the option that fits on more."""
