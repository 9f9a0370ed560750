"""``InlineFigure``: a ``matplotlib.figure.Figure`` that a notebook shows inline by itself.

pe-hooks never touches pyplot or the backend, so a figure it draws is not registered with
IPython's inline backend (that happens only when pyplot is imported, or after ``%matplotlib
inline``). ``_repr_png_`` lets Jupyter render the returned figure anyway; where the inline
backend is active its own formatter takes precedence and the result is the same picture.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pe_hooks.core.atomic import atomic_write_bytes


class InlineFigure(Figure):
    """A plain ``Figure`` (no pyplot state) that Jupyter displays as a PNG."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue()


def save_png(fig: Figure, path: str | Path, **kwargs: Any) -> Path:
    """Save ``fig`` as a PNG atomically (a temporary file renamed into place: never a truncated PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())
