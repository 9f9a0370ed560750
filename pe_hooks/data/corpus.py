"""The embedded default corpus: docstrings that the Python standard library already carries.

No download: the text comes from ``__doc__`` strings of a fixed list of standard-library modules,
their classes and functions, in a deterministic order. It is English technical prose (about the
register of documentation), one document per docstring.
"""

from __future__ import annotations

import importlib
import inspect as pyinspect
from functools import lru_cache
from pathlib import Path

from pe_hooks.core.errors import DataError

STDLIB_MODULES = [
    "abc",
    "argparse",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "cmd",
    "codecs",
    "collections",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "email",
    "enum",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "http.server",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "mailbox",
    "math",
    "mimetypes",
    "multiprocessing",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "pprint",
    "profile",
    "pstats",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "stat",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "symtable",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "trace",
    "traceback",
    "types",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipfile",
    "zipimport",
    "zoneinfo",
]


def _clean(doc: str) -> str:
    return " ".join(pyinspect.cleandoc(doc).split())


@lru_cache(maxsize=4)
def stdlib_docstrings(min_chars: int = 300) -> tuple[str, ...]:
    """All distinct docstrings of at least ``min_chars`` characters, deterministic order."""
    seen: set[str] = set()
    out: list[str] = []
    for modname in STDLIB_MODULES:
        try:
            mod = importlib.import_module(modname)
        except Exception:  # a module missing on this platform is skipped
            continue
        objs = [mod] + [getattr(mod, n) for n in sorted(dir(mod)) if not n.startswith("_")]
        for obj in objs:
            candidates = [obj]
            if pyinspect.isclass(obj):
                candidates += [getattr(obj, n, None) for n in sorted(vars(obj)) if not n.startswith("_")]
            for c in candidates:
                doc = getattr(c, "__doc__", None)
                if not isinstance(doc, str):
                    continue
                text = _clean(doc)
                if len(text) >= min_chars and text not in seen:
                    seen.add(text)
                    out.append(text)
    return tuple(out)


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
