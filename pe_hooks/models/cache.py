"""Where pe-hooks keeps converted models: ``$PE_HOOKS_CACHE``, else ``$XDG_CACHE_HOME/pe-hooks``,
else ``~/.cache/pe-hooks``.

Writes are atomic: a folder is built under a temporary name in the same parent and renamed into
place, so an interrupted conversion never leaves a half-written cache that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from pe_hooks.core.errors import ModelLoadError

COMPLETE_MARKER = ".complete"


def cache_root() -> Path:
    """The cache folder (created if missing)."""
    env = os.environ.get("PE_HOOKS_CACHE")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "pe-hooks"
    if root.exists() and not root.is_dir():
        raise ModelLoadError(
            f"the pe-hooks cache {root} is a file, not a folder"
            + (" (PE_HOOKS_CACHE points at it)" if env else "")
            + "; set PE_HOOKS_CACHE to a folder, or remove the file"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot create the pe-hooks cache folder {root} ({exc.strerror or exc}); set PE_HOOKS_CACHE to a writable folder"
        ) from exc
    return root


def cached_folder(name: str, build: Callable[[Path], None]) -> Path:
    """Return ``cache_root()/name``, calling ``build(tmp_folder)`` first if it is not complete.

    ``build`` writes into a fresh temporary folder; on success a marker file is written and the
    folder is renamed into place. A folder without the marker (left by a crash) is rebuilt.
    """
    final = cache_root() / name
    if (final / COMPLETE_MARKER).exists():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_root()))
    try:
        build(tmp)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        if final.exists():  # stale, incomplete folder from an interrupted run
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished first: keep theirs
            if not (final / COMPLETE_MARKER).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
