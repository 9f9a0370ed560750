"""``pe-hooks`` entry point: one sub-command per module in this folder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pe_hooks.cli import inspect_cmd

# Each sub-command module exposes ``register(subparsers) -> None`` and sets ``func`` on its parser.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [inspect_cmd.register]  # type: ignore[type-arg]


def _optional_subcommands() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """Sub-commands added by later modules (sweep, branches, bench), if present."""
    import importlib

    found = []
    for mod in ("sweep_cmd", "branches_cmd", "bench_cmd"):
        try:
            module = importlib.import_module(f"pe_hooks.cli.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pe_hooks.cli.{mod}":
                raise
            continue
        found.append(module.register)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pe-hooks",
        description="Remove positional information from transformer activations and measure what is left.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS + _optional_subcommands():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "0")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmarks' own parser owns every option after "bench"
        from pe_hooks.cli.bench_cmd import run_argv

        return run_argv(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from pe_hooks.errors import PeHooksError

    try:
        return int(args.func(args) or 0)
    except PeHooksError as exc:
        print(f"pe-hooks: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
