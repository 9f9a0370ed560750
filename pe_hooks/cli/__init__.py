"""The ``pe-hooks`` command line."""

from pe_hooks.cli.main import main

__all__ = ["main"]
