"""Quieter loading without changing a process-wide setting: logger levels scoped to a call."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise the named loggers to ``level`` for the ``with`` block, then restore each one's own
    level (``NOTSET`` included), also when the block raises. A logger already quieter is left alone."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            if lg.getEffectiveLevel() < level:
                lg.setLevel(level)
        yield
    finally:
        for lg, old in zip(loggers, before, strict=True):
            lg.setLevel(old)
