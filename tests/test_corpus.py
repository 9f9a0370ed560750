"""The embedded corpus is a shipped file: the same documents whatever the interpreter or imports."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from pe_hooks import DataError
from pe_hooks.data import corpus

ROOT = Path(__file__).resolve().parents[1]


def _fingerprint_in_subprocess(prelude: str) -> str:
    code = (
        f"{prelude}\n"
        "import hashlib\n"
        "from pe_hooks.data.corpus import stdlib_docstrings\n"
        "print(hashlib.sha256('\\n'.join(stdlib_docstrings(0)).encode()).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.strip()


def test_corpus_does_not_depend_on_what_is_imported() -> None:
    """Read at run time from the interpreter, the corpus changed with the imports (transformers adds
    methods to logging.Logger, other packages load email.* submodules): 3,610 vs 3,622 documents."""
    bare = _fingerprint_in_subprocess("")
    loaded = _fingerprint_in_subprocess("import email.mime.text, transformers, transformer_lens  # noqa")
    assert bare == loaded
    assert bare == hashlib.sha256("\n".join(corpus.stdlib_docstrings(0)).encode()).hexdigest()


def test_corpus_file_is_the_frozen_collection() -> None:
    docs = corpus.stdlib_docstrings(0)
    assert len(docs) == 3622
    assert len(corpus.stdlib_docstrings()) == 689  # the default (>= 300 characters), what the main job reads
    assert all(d and "\n" not in d and not d.startswith("#") for d in docs)
    header = [line for line in corpus.CORPUS_FILE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any("PSF License" in line for line in header)


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="the file was frozen from CPython 3.11.7")
def test_freeze_tool_reproduces_the_file(tmp_path: Path) -> None:
    """The freezing tool, run again on the interpreter the file came from, writes the same bytes."""
    out = tmp_path / "corpus.txt"
    code = (
        "import sys; sys.path.insert(0, 'tools'); import freeze_corpus as f; "
        f"f.OUT = __import__('pathlib').Path({str(out)!r}); f.main()"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, cwd=ROOT, capture_output=True)
    assert out.read_bytes() == corpus.CORPUS_FILE.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "edited", "missing"])
def test_damaged_corpus_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    copy = tmp_path / "stdlib_docstrings.txt"
    data = corpus.CORPUS_FILE.read_bytes()
    if damage == "truncated":
        copy.write_bytes(data[: len(data) // 2])
    elif damage == "edited":
        copy.write_bytes(data.replace(b"Abstract Base Classes", b"Abstract base classes", 1))
    monkeypatch.setattr(corpus, "CORPUS_FILE", copy)
    corpus._documents.cache_clear()
    try:
        with pytest.raises(DataError, match="reinstall"):
            corpus.stdlib_docstrings()
    finally:
        corpus._documents.cache_clear()
