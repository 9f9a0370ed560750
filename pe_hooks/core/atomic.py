"""Atomic artefacts: a folder appears complete (with a marker and a format version) or not at all.

``write_artefact(target, kind, version)`` is a context manager yielding a fresh temporary folder
beside ``target``; when the block succeeds it writes the marker (kind, format version, every
file's size) and swaps the folder into place with ``os.replace``. An interrupted write leaves at
most a hidden ``.name.tmp-*`` folder and the previous artefact untouched, never a mix of new and
old files. ``read_artefact(folder, kind, version)`` checks the marker, the version and the file
sizes before anything is loaded, and raises ``ArtefactError`` naming the fix.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pe_hooks.core.errors import ArtefactError

MARKER = ".pe-hooks-artefact.json"


def _files(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER
    }


def _ours(folder: Path, replaces: Iterable[str]) -> bool:
    """True if ``folder`` is a pe-hooks artefact, or holds only files named like ``replaces`` (an
    output folder written before artefacts had markers)."""
    if (folder / MARKER).exists():
        return True
    pats = list(replaces)
    return all(p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in pats) for p in folder.iterdir())


def check_writable_target(target: str | Path, kind: str, replaces: Iterable[str] = ()) -> Path:
    """Raise ``ArtefactError`` now (before any work) if ``target`` cannot become an artefact folder.

    ``replaces``: file-name patterns an earlier, marker-less output of the same kind consists of.
    """
    if not isinstance(target, (str, os.PathLike)):
        raise ArtefactError(f"cannot write the {kind} to {target!r}; pass a folder path")
    path = Path(target)
    if path.exists() and not path.is_dir():
        raise ArtefactError(f"cannot write the {kind} to {path}: it is a file; pass a folder path")
    if path.is_dir() and not _ours(path, replaces):
        raise ArtefactError(
            f"cannot write the {kind} to {path}: the folder holds other files (it is not a pe-hooks artefact) "
            "and would be replaced; pass a new or empty folder"
        )
    parent = path.parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise ArtefactError(f"cannot write the {kind} to {path}: {p} is a file; pass another folder")
            try:  # really try (permissions, read-only or virtual file systems such as /proc), leaving nothing behind
                os.rmdir(tempfile.mkdtemp(prefix=".pe-hooks-write-test-", dir=p))
            except OSError as exc:
                raise ArtefactError(
                    f"cannot write the {kind} to {path}: {p} is not writable ({exc.strerror or exc}); pass another folder"
                ) from exc
            break
    return path


@contextmanager
def write_artefact(
    target: str | Path, kind: str, version: int, *, replaces: Iterable[str] = (), **extra: Any
) -> Iterator[Path]:
    """Yield a temporary folder to write ``kind`` into; on success it replaces ``target`` whole.

    ``target`` may not exist yet, be empty, or hold an earlier pe-hooks artefact (which is
    replaced); a file, or a folder of other files, is refused.
    """
    final = check_writable_target(target, kind, replaces)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise ArtefactError(f"cannot write the {kind} to {final}: {exc.strerror or exc}; pass another folder") from exc
    try:
        yield tmp
        marker = {"kind": kind, "format_version": version, "files": _files(tmp), **extra}
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / "x")
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None and not final.exists():  # interrupted between the two renames: put the old one back
                os.rename(old / "x", final)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_artefact(folder: str | Path, kind: str, version: int, *, fix: str) -> dict[str, Any]:
    """Check that ``folder`` holds a complete ``kind`` of format ``version``; return its marker.

    ``fix`` says how to make a good one (e.g. "save it again with eraser.save(path)").
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise ArtefactError(f"expected the folder path of a saved {kind}, got {type(folder).__name__}; pass the folder path")
    path = Path(folder)
    if not path.exists():
        raise ArtefactError(f"{path} does not exist: no saved {kind} there; {fix}")
    if not path.is_dir():
        raise ArtefactError(f"{path} is a file; a saved {kind} is a folder: pass the folder it was saved to")
    marker_path = path / MARKER
    if not marker_path.exists():
        raise ArtefactError(
            f"{path} does not hold a complete saved {kind} (no completeness marker {MARKER}: an interrupted "
            f"save, or not written by pe-hooks); {fix}"
        )
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path}: the {kind}'s marker is corrupt ({exc}); {fix}") from exc
    if not isinstance(marker, dict):
        raise ArtefactError(f"{path}: the {kind}'s marker is corrupt (not a JSON object); {fix}")
    if marker.get("kind") != kind:
        raise ArtefactError(f"{path} holds a saved {marker.get('kind')!r}, not a {kind}; pass a folder saved as a {kind}")
    if marker.get("format_version") != version:
        raise ArtefactError(
            f"{path} holds a {kind} of format version {marker.get('format_version')}, this pe-hooks reads "
            f"version {version}; {fix}"
        )
    for name, size in dict(marker.get("files", {})).items():
        f = path / name
        if not f.is_file():
            raise ArtefactError(f"{path} is incomplete: {name} is missing; {fix}")
        if f.stat().st_size != size:
            raise ArtefactError(
                f"{path} is corrupt: {name} has {f.stat().st_size} bytes, {size} were written; {fix}"
            )
    return marker


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write one file via a temporary file beside it and ``os.replace``."""
    final = Path(path)
    if final.is_dir():
        raise ArtefactError(f"cannot write {final}: it is a folder; pass a file path")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    except OSError as exc:
        raise ArtefactError(f"cannot write {final}: {exc.strerror or exc}; pass another path") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final
