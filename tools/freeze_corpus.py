"""Freeze the embedded corpus: the standard-library docstrings of *this* interpreter, written to
``pe_hooks/data/stdlib_docstrings.txt``.

The package reads that file, never the running interpreter, so the main job's data (and every
number in the README) is the same on every Python version. Run this only to change the corpus
(``.venv/bin/python tools/freeze_corpus.py``), with the Python the file was frozen from (its header
says which); then regenerate ``docs/results`` and say which cells changed.
"""

from __future__ import annotations

import importlib
import inspect as pyinspect
import platform
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "pe_hooks" / "data" / "stdlib_docstrings.txt"
HEADER = """\
# The embedded corpus of pe-hooks: docstrings of Python {version}'s standard library, one document
# a line (whitespace collapsed), in the order tools/freeze_corpus.py collects them (a fixed list of
# modules, then their public names and class members in sorted order; first occurrence kept).
# They are part of CPython, (c) Python Software Foundation, distributed under the PSF License
# Agreement (https://docs.python.org/3/license.html), which permits copying and redistribution
# with this notice. Three documents (logging.Logger.warning_once, info_once, warning_advice) are
# transformers' (Apache-2.0), added to logging.Logger when it is imported, as it was when the corpus
# was collected. Lines starting with '#' are this header; do not edit by hand.
"""

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


def main() -> None:
    # Collect in the state the main job ran in when the corpus was first read at run time: after
    # importing pe-hooks' command line and its dependencies. Importing them loads more email.*
    # submodules and lets transformers add methods to logging.Logger (three of its docstrings,
    # Apache-2.0, are in the corpus); collected in a bare interpreter, 13 documents differ.
    import pe_hooks.cli.main  # noqa: F401

    docs = stdlib_docstrings(min_chars=0)
    assert all(d and not d.startswith("#") and "\n" not in d for d in docs)
    OUT.write_text(HEADER.format(version=platform.python_version()) + "".join(d + "\n" for d in docs), encoding="utf-8")
    print(f"wrote {len(docs)} documents ({sum(map(len, docs))} characters) to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
