"""Argument types and the parser class of the ``pe-hooks`` commands: a bad value is a one-line
message and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (``pe-hooks sweep: error: ...``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{what}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number_in(
    minimum: float | None = None, maximum: float | None = None, *, above: float | None = None, what: str = ""
) -> Callable[[str], float]:
    """An argparse type: a finite number ``> above`` / ``>= minimum`` / ``<= maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number{what}, got {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}{what}, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}{what}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}{what}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def existing_file(text: str) -> Path:
    """An argparse type: a path to a readable file."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist; pass a UTF-8 text file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file; pass a UTF-8 text file")
    return path


def layer_list(text: str) -> list[int] | None:
    """``'all'`` -> None, ``'0,4,8'``, or ``'start:stop[:step]'``."""
    if text in ("all", ""):
        return None
    try:
        if ":" in text:
            a, b, *step = (int(v) for v in text.split(":"))
            if len(step) > 1 or (step and step[0] == 0):
                raise ValueError
            layers = list(range(a, b, step[0] if step else 1))
        else:
            layers = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read layers {text!r}: use 'all', '0,4,8' or 'start:stop[:step]'"
        ) from None
    if not layers:
        raise argparse.ArgumentTypeError(f"layers {text!r} select no layer")
    return layers


def fail(message: str) -> int:
    """Print a one-line error and return exit code 2."""
    print(f"pe-hooks: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
