"""Atomic artefacts: a folder appears complete (with a marker and a format version) or not at all.

``write_artefact(target, kind, version)`` is a context manager yielding a fresh temporary folder
beside ``target``; when the block succeeds it writes the marker (kind, format version, every
file's size and SHA-256, the SHA-256 of each tensor of a ``.safetensors`` file, and a SHA-256 of the
marker's own fields) and swaps the folder into place with ``os.replace``. An interrupted write leaves
at most a hidden ``.name.tmp-PID-*`` folder and the previous artefact untouched, never a mix of new
and old files; the next write beside it removes such folders once their process has ended (and
puts back a previous artefact a crash left between the two renames). ``read_artefact(folder,
kind, version)`` checks the marker, the version and every file's content before anything is loaded,
and raises ``ArtefactError`` naming the fix (and the tensor or file that changed).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from pe_hooks.core.errors import ArtefactError

MARKER = ".pe-hooks-artefact.json"
#: a temp folder whose name carries no live process id is stale after this many seconds
STALE_AFTER_S = 600.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tensor_sums(path: Path) -> dict[str, str]:
    """SHA-256 of each tensor's raw bytes (dtype and shape included) in a ``.safetensors`` file."""
    out: dict[str, str] = {}
    with safe_open(str(path), "pt") as fh:
        for name in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
            t = fh.get_tensor(name)
            h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            out[name] = h.hexdigest()
    return out


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MARKER:
            entry: dict[str, Any] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            if p.suffix == ".safetensors":
                entry["tensors"] = _tensor_sums(p)
            out[str(p.relative_to(folder))] = entry
    return out


def _marker_sum(marker: dict[str, Any]) -> str:
    body = {k: v for k, v in marker.items() if k != "marker_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


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
    if not os.fspath(target).strip() or Path(target).name in ("", ".", ".."):
        raise ArtefactError(
            f"cannot write the {kind} to {os.fspath(target)!r}: that is not a folder name (it would replace the "
            "current or a parent folder); pass a folder path such as 'eraser-1'"
        )
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _stale(folder: Path) -> bool:
    """A ``.name.tmp-PID-*`` / ``.name.old-PID-*`` folder whose process has ended (or, without a
    PID in its name, one untouched for ``STALE_AFTER_S``)."""
    tail = folder.name.rsplit(".tmp-", 1)[-1] if ".tmp-" in folder.name else folder.name.rsplit(".old-", 1)[-1]
    pid = tail.split("-", 1)[0]
    if pid.isdigit() and "-" in tail:
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    try:
        return time.time() - folder.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def clean_stale(final: Path) -> list[Path]:
    """Remove the temp folders interrupted writes of ``final`` left beside it (their process has
    ended); a previous artefact left inside an ``.old-*`` folder while ``final`` is missing is put
    back first. Returns the folders removed."""
    removed: list[Path] = []
    for pattern in (f".{final.name}.old-*", f".{final.name}.tmp-*"):
        for d in sorted(final.parent.glob(pattern)):
            if not d.is_dir() or not _stale(d):
                continue
            kept = d / "x"
            if pattern.endswith("old-*") and not final.exists() and (kept / MARKER).exists():
                os.rename(kept, final)  # crashed between the two renames: the previous artefact comes back
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


@contextmanager
def write_artefact(
    target: str | Path, kind: str, version: int, *, replaces: Iterable[str] = (), **extra: Any
) -> Iterator[Path]:
    """Yield a temporary folder to write ``kind`` into; on success it replaces ``target`` whole.

    ``target`` may not exist yet, be empty, or hold an earlier pe-hooks artefact (which is
    replaced); a file, or a folder of other files, is refused. Temp folders earlier interrupted
    writes of ``target`` left behind are removed first.
    """
    final = check_writable_target(target, kind, replaces)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    except OSError as exc:
        raise ArtefactError(f"cannot write the {kind} to {final}: {exc.strerror or exc}; pass another folder") from exc
    try:
        yield tmp
        marker: dict[str, Any] = {"kind": kind, "format_version": version, "files": _files(tmp), **extra}
        marker["marker_sha256"] = _marker_sum(marker)
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))
        _swap_in(tmp, final, kind)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, final: Path, kind: str) -> None:
    """``final`` becomes ``tmp`` (the previous ``final`` is removed), or stays as it was."""
    old = None
    try:
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=final.parent))
            os.replace(final, old / "x")
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None and not final.exists():  # interrupted between the two renames: put the old one back
                os.rename(old / "x", final)
            raise
    except OSError as exc:
        raise ArtefactError(f"cannot write the {kind} to {final}: {exc.strerror or exc}; pass another folder") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def read_artefact(folder: str | Path, kind: str, version: int, *, fix: str) -> dict[str, Any]:
    """Check that ``folder`` holds a complete ``kind`` of format ``version``; return its marker.

    ``fix`` says how to make a good one (e.g. "save it again with eraser.save(path)"). Every file
    is checked against the size and SHA-256 the marker recorded (markers written before checksums
    existed: the size only), and the marker against its own checksum.
    """
    path, marker = _read_marker(folder, kind, version, fix)
    want = marker.get("marker_sha256")
    if want is not None and want != _marker_sum(marker):
        raise ArtefactError(
            f"{path}: the {kind}'s marker {MARKER} was edited after it was written (its fields no longer match "
            f"their checksum); {fix}"
        )
    files = marker.get("files", {})
    if not isinstance(files, dict):
        raise ArtefactError(f"{path}: the {kind}'s marker is corrupt (no file list); {fix}")
    for name, entry in files.items():
        _check_file(path, name, entry, fix)
    return marker


def _read_marker(folder: str | Path, kind: str, version: int, fix: str) -> tuple[Path, dict[str, Any]]:
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
    return path, marker


def _check_file(path: Path, name: str, entry: Any, fix: str) -> None:
    """One file of an artefact against its marker entry (``{"bytes", "sha256", "tensors"?}``, or a
    bare size from markers written before checksums)."""
    f = path / name
    if not f.is_file():
        raise ArtefactError(f"{path} is incomplete: {name} is missing; {fix}")
    size = entry.get("bytes") if isinstance(entry, dict) else entry
    if f.stat().st_size != size:
        raise ArtefactError(f"{path} is corrupt: {name} has {f.stat().st_size} bytes, {size} were written; {fix}")
    if not isinstance(entry, dict) or _sha256(f) == entry.get("sha256"):
        return
    changed = ""
    if isinstance(entry.get("tensors"), dict):
        try:
            now = _tensor_sums(f)
        except (SafetensorError, OSError, RuntimeError):
            now = {}
        diff = sorted(k for k in {*entry["tensors"], *now} if entry["tensors"].get(k) != now.get(k))
        if now and diff:
            changed = f" (tensor{'s' if len(diff) > 1 else ''} {', '.join(diff[:4])} changed)"
    raise ArtefactError(
        f"{path} is corrupt: the content of {name} is not what was written{changed} (its SHA-256 differs, same size); {fix}"
    )


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
