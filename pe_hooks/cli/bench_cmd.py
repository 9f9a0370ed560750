"""``pe-hooks bench``: run the repository's benchmarks (``python -m benchmarks``) in a subprocess.

The benchmarks are not part of the installed package: they live in ``benchmarks/`` of a source
checkout, and the command runs them with that checkout as the working directory (nothing is added
to ``sys.path`` of this process). Without ``--out`` the results go to the checkout's ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pe_hooks.core.errors import PeHooksError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="hook overhead and sweep speed (ratios in one run); see benchmarks/RESULTS.md",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_argv(list(args.rest))


def repository_root() -> Path | None:
    """The source checkout this package was installed from (editable install), if there is one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "benchmarks" / "__main__.py").exists() else None


def run_argv(argv: list[str]) -> int:
    """Run ``python -m benchmarks ARGV`` in the repository (its own parser owns every option)."""
    root = repository_root()
    if root is None:
        raise PeHooksError(
            "the benchmarks live in the pe-hooks repository (benchmarks/), which this installation does not "
            "include; clone the repository, install it with `pip install -e .` (or `make setup`) and run "
            "`pe-hooks bench` or `python -m benchmarks` from there"
        )
    return subprocess.run([sys.executable, "-m", "benchmarks", *_absolute_out(argv)], cwd=root, check=False).returncode


def _absolute_out(argv: list[str]) -> list[str]:
    """A relative ``--out`` means relative to where the user ran the command, not to the repository."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--out" and i + 1 < len(out):
            out[i + 1] = str(Path(out[i + 1]).resolve())
        elif arg.startswith("--out="):
            out[i] = "--out=" + str(Path(arg[len("--out="):]).resolve())
    return out
