"""Where pe-hooks keeps converted models: ``$PE_HOOKS_CACHE``, else ``$XDG_CACHE_HOME/pe-hooks``,
else ``~/.cache/pe-hooks``.

Writes are atomic: a folder is built under a temporary name in the same parent and renamed into
place, so an interrupted conversion never leaves a half-written cache that looks complete. The
completeness marker lists every file with its size; a cached folder whose files were deleted or
truncated since (or that cannot be read) raises ``ModelLoadError`` naming the folder to delete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from safetensors import SafetensorError

from pe_hooks.core.atomic import clean_stale
from pe_hooks.core.errors import ModelLoadError

COMPLETE_MARKER = ".complete"
T = TypeVar("T")
#: what reading a damaged file raises from inside transformers / tokenizers / safetensors
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SafetensorError, EOFError, KeyError)


def _delete_fix(folder: Path) -> str:
    return f"delete {folder} (it is rebuilt on the next load), or set PE_HOOKS_CACHE to another folder"


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

    ``build`` writes into a fresh temporary folder (the temp folders of builds whose process has
    ended are removed first); on success a marker listing every file and its size is written and
    the folder is renamed into place. A folder without the marker (left by a
    crash) is rebuilt; one whose files no longer match the marker raises ``ModelLoadError``.
    """
    root = cache_root()
    final = root / name
    if (final / COMPLETE_MARKER).exists():
        check_complete(final)
        return final
    try:
        clean_stale(final)  # temp folders of conversions whose process was killed
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise ModelLoadError(
            f"cannot write to the pe-hooks cache {root} ({exc.strerror or exc}) to build '{name}'; "
            "set PE_HOOKS_CACHE to a writable folder"
        ) from exc
    try:
        build(tmp)
        _write_marker(tmp)
        if final.exists():  # stale, incomplete folder from an interrupted run
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished first: keep theirs
            if not (final / COMPLETE_MARKER).exists():
                raise
    except OSError as exc:
        raise ModelLoadError(
            f"could not write '{name}' into the pe-hooks cache {root} ({exc.strerror or exc}); free disk space, "
            "or set PE_HOOKS_CACHE to a writable folder"
        ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_marker(folder: Path) -> None:
    files = {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}
    (folder / COMPLETE_MARKER).write_text(json.dumps({"files": files}, indent=1) + "\n")


def check_complete(folder: Path) -> None:
    """``ModelLoadError`` if a file the marker lists is missing or changed size (a marker from an
    older pe-hooks, without a file list, is taken as it is)."""
    try:
        files = json.loads((folder / COMPLETE_MARKER).read_text()).get("files")
    except (ValueError, AttributeError, OSError):
        return  # legacy "ok" marker: loading errors are still caught by reading_cache
    if not isinstance(files, dict):
        return
    for rel, size in files.items():
        f = folder / rel
        if not f.is_file():
            raise ModelLoadError(f"the cached model folder {folder} is damaged: {rel} is missing; {_delete_fix(folder)}")
        if f.stat().st_size != size:
            raise ModelLoadError(
                f"the cached model folder {folder} is damaged: {rel} has {f.stat().st_size} bytes, {size} were "
                f"written (truncated or edited); {_delete_fix(folder)}"
            )


def reading_cache(folder: Path, what: str, load: Callable[[], T], fix: str | None = None) -> T:
    """``load()`` (a ``from_pretrained`` of ``folder``), with a damaged file reported as a
    ``ModelLoadError`` naming the fix (default: the cache folder to delete) instead of a traceback
    from the loader."""
    try:
        return load()
    except READ_ERRORS as exc:
        first = " ".join(str(exc).split())[:160]
        raise ModelLoadError(
            f"the {what} in {folder} cannot be read ({type(exc).__name__}: {first}); {fix or _delete_fix(folder)}"
        ) from exc
