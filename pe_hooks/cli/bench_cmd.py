"""``pe-hooks bench``: the benchmarks in the repository's ``benchmarks/`` folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pe_hooks.errors import PeHooksError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="hook overhead and sweep speed (ratios in one run); see benchmarks/RESULTS.md",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_argv(list(args.rest))


def run_argv(argv: list[str]) -> int:
    """Forward ``argv`` to ``python -m benchmarks`` (its own parser owns every option)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "cases.py").exists():
        raise PeHooksError("the benchmarks live in the repository (benchmarks/); run from a source checkout")
    sys.path.insert(0, str(root))
    from benchmarks.__main__ import main

    return main(argv)
