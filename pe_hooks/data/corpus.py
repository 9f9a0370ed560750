"""The embedded default corpus: docstrings of the Python standard library, shipped as a data file.

``stdlib_docstrings.txt`` beside this module holds 3,622 documents (English technical prose, one
docstring a line), frozen once from CPython 3.11.7 by ``tools/freeze_corpus.py`` (its header gives
the licence). The package reads the file, never the running interpreter, so the main job's data is
the same on every Python version and whatever else is imported.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pe_hooks.core.errors import DataError

CORPUS_FILE = Path(__file__).with_name("stdlib_docstrings.txt")
# sha256 of the file as frozen: a damaged or edited copy is refused, not silently used
CORPUS_SHA256 = "330953d70bbaba2dfdb8f9136a94af5d1c5f4d28c3320b88c57baf1342dc0a53"


@lru_cache(maxsize=1)
def _documents() -> tuple[str, ...]:
    try:
        raw = CORPUS_FILE.read_bytes()
    except OSError as exc:
        raise DataError(
            f"the embedded corpus {CORPUS_FILE} cannot be read ({exc.strerror or exc}); reinstall pe-hooks "
            "(`pip install --force-reinstall pe-hooks`, or `make setup` in a clone)"
        ) from exc
    if hashlib.sha256(raw).hexdigest() != CORPUS_SHA256:
        raise DataError(
            f"the embedded corpus {CORPUS_FILE} is damaged or was edited (checksum mismatch); reinstall "
            "pe-hooks (`pip install --force-reinstall pe-hooks`, or `git checkout` the file in a clone)"
        )
    lines = raw.decode("utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


def stdlib_docstrings(min_chars: int = 300) -> tuple[str, ...]:
    """The embedded documents of at least ``min_chars`` characters, in their fixed order."""
    return tuple(d for d in _documents() if len(d) >= min_chars)


def read_text_file(path: Path) -> list[str]:
    """Documents of a user's text file: paragraphs separated by blank lines."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"text file {path} does not exist; pass the path of a UTF-8 text file")
    if not path.is_file():
        raise DataError(f"{path} is not a file; pass a UTF-8 text file (paragraphs separated by blank lines)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); pass a readable UTF-8 text file") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded; a binary file?); pass a UTF-8 text file "
            "(re-encode it, e.g. `iconv -t utf-8`)"
        ) from exc
    if "\x00" in text:
        raise DataError(f"{path} holds NUL bytes (a binary file?); pass a UTF-8 text file")
    docs = [" ".join(p.split()) for p in text.split("\n\n")]
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(f"{path} holds no text; give a UTF-8 file with paragraphs separated by blank lines")
    return docs
