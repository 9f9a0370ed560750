"""``pe-hooks`` entry point: one sub-command per module in this folder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pe_hooks.cli import architectures_cmd, bench_cmd, branches_cmd, inspect_cmd, sweep_cmd
from pe_hooks.cli.args import Parser, fail

# Each sub-command module exposes ``register(subparsers) -> None`` and sets ``func`` on its parser.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [  # type: ignore[type-arg]
    inspect_cmd.register, sweep_cmd.register, branches_cmd.register, bench_cmd.register, architectures_cmd.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pe-hooks",
        description="Remove positional information from transformer activations and measure what is left.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "0")
    argv = list(sys.argv[1:] if argv is None else argv)
    from pe_hooks.core.errors import PeHooksError

    try:
        if argv[:1] == ["bench"]:  # the benchmarks' own parser owns every option after "bench"
            from pe_hooks.cli.bench_cmd import run_argv

            return run_argv(argv[1:])
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse: --help (0) or a bad value (2, one line already printed)
            return exc.code if isinstance(exc.code, int) else 2
        return int(args.func(args) or 0)
    except PeHooksError as exc:  # every deliberate error: one line naming the fix, exit code 2
        return fail(str(exc))
    except KeyboardInterrupt:
        print("pe-hooks: interrupted (nothing half-written was left behind)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
