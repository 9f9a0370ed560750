"""``pe-hooks inspect MODEL``: print where position lives in a model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect", help="print the positional scheme and the hook names of every site that fires"
    )
    p.add_argument("model", nargs="?", default="smollm2-135m", help="model name (default: smollm2-135m)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pe_hooks import inspect, load_model

    model = load_model(args.model, device=args.device)
    print(inspect(model))
    return 0
