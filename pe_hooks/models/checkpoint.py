"""Checks of a local HF checkpoint folder before TransformerLens reads it.

A truncated or empty ``*.safetensors`` file otherwise surfaces as a ``SafetensorError`` from deep
inside ``from_pretrained``; reading each file's header (cheap: no tensor data is loaded) names the
damaged file and the fix instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from pe_hooks.core.errors import ModelLoadError


def check_checkpoint(folder: Path) -> None:
    """``ModelLoadError`` naming the first ``*.json`` file of ``folder`` that is not valid JSON, or
    ``*.safetensors`` file that is empty, truncated or not a safetensors file (nothing for a
    non-folder: the loader reports that)."""
    if not folder.is_dir():
        return
    for f in sorted(folder.glob("*.json")):
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            what = "empty" if f.stat().st_size == 0 else "not valid JSON (truncated or edited)"
            raise ModelLoadError(
                f"the checkpoint file {f} is {what}: {' '.join(str(exc).split())[:120]}; save the model and tokenizer "
                "there again (model.save_pretrained(folder), tokenizer.save_pretrained(folder)) or copy the complete file"
            ) from exc
    for f in sorted(folder.glob("*.safetensors")):
        size = f.stat().st_size
        try:
            with safe_open(str(f), "pt"):
                pass
        except (SafetensorError, OSError) as exc:
            what = "empty" if size == 0 else f"truncated or not a safetensors file ({size} bytes)"
            raise ModelLoadError(
                f"the checkpoint file {f} is {what}: {' '.join(str(exc).split())[:120]}; save the model there again "
                "(model.save_pretrained(folder)) or copy the complete file"
            ) from exc
