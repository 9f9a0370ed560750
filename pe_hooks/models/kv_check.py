"""Is this model's KV-cache decoding right? A cheap self-check, run once per model.

Some releases of the stack decode wrongly with a KV cache: with ``transformers 5.24.0`` under
``transformer-lens 4.3.0`` the bare ``TransformerBridge`` (no pe-hooks hook at all) gives cached
steps whose logits differ from one full forward of the same sequence (0.2–20 in logit units; see
``docs/upstream.md`` for the cause). Anything sampled that way is silently wrong text, and its
latents are not the ones the user asked about.

``check_kv_cache(model)`` measures it on the user's own model: greedy-decode a few tokens with
``use_past_kv_cache=True`` and ``output_logits=True`` from a small batch (one row left-padded, so
the attention mask and mask-derived positions are exercised), then run one full forward of the
finished sequences and compare the logits of the generated positions. The result is cached per
model object (weakly: nothing is attached to the model).

Tolerance: the error is scaled by the largest logit of the full forward. A correct stack gives
≤1e-5 (float32; SDPA vs eager accumulation order), the broken pair 1e-2 to 1 — ``tol=1e-3``
separates them by two orders of magnitude on every family the project supports.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from inspect import signature

import torch

from pe_hooks.core.errors import DataError, UpstreamError
from pe_hooks.core.types import Model

#: The pair the test suite passed on (``lock/tl4.txt``); named in the error message.
TESTED = {"transformers": "5.23.0", "transformer-lens": "4.3.0"}
DEFAULT_TOL = 1e-3

_RESULTS: weakref.WeakKeyDictionary[torch.nn.Module, KVCacheCheck] = weakref.WeakKeyDictionary()


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class KVCacheCheck:
    """Cached decoding vs one full forward, on a few greedy steps.

    Attributes:
        max_abs_error: largest absolute logit difference over the generated positions.
        rel_error: ``max_abs_error`` / the largest absolute logit of the full forward.
        tol: the threshold on ``rel_error``.
        versions: installed ``transformers`` and ``transformer-lens`` versions.
    """

    max_abs_error: float
    rel_error: float
    tol: float
    versions: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.rel_error <= self.tol

    def message(self) -> str:
        v = self.versions
        return (
            f"KV-cache decoding is wrong with transformers {v['transformers']} + transformer-lens "
            f"{v['transformer-lens']}: cached steps differ from a full forward of the same sequence by "
            f"{self.max_abs_error:.3g} in logits (relative {self.rel_error:.2g} > {self.tol:g}). This is an "
            f"upstream bug (docs/upstream.md), not your model. Fix: install the tested pair, "
            f"pip install 'transformers=={TESTED['transformers']}' "
            f"'transformer-lens=={TESTED['transformer-lens']}', or decode without the cache "
            "(pe-hooks branches --kv-cache off; branches(..., kv_cache=False); "
            "model.generate(..., use_past_kv_cache=False))."
        )


def _probe_batch(model: Model, prompt_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = int(model.cfg.d_vocab)
    gen = torch.Generator().manual_seed(0)
    low = min(10, vocab - 1)
    tokens = torch.randint(low, vocab, (2, prompt_len), generator=gen)
    mask = torch.ones(2, prompt_len, dtype=torch.long)
    mask[1, :pad] = 0
    tok = getattr(model, "tokenizer", None)
    pad_id = getattr(tok, "pad_token_id", None)
    tokens[1, :pad] = int(pad_id) if pad_id is not None else 0
    return tokens, mask


def check_kv_cache(model: Model, *, steps: int = 4, tol: float = DEFAULT_TOL, refresh: bool = False) -> KVCacheCheck:
    """Measure cached decoding against a full forward on ``model`` (once per model; see module doc).

    Hooks already attached to the model stay attached for both runs, so a position-dependent hook
    that mishandles the cache is caught too. A model whose full forward gives NaN / inf logits raises
    ``DataError`` (the cache is not to blame).
    """
    if not refresh and model in _RESULTS and _RESULTS[model].tol == tol:
        return _RESULTS[model]
    device = getattr(model.cfg, "device", None) or "cpu"
    tokens, mask = _probe_batch(model, prompt_len=6, pad=2)
    tokens, mask = tokens.to(device), mask.to(device)
    kwargs = {"attention_mask": mask} if _takes_mask(model) else {}
    if not kwargs:  # no mask support: check unpadded rows only
        tokens, mask = tokens[:1], mask[:1]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        out = model.generate(
            tokens, max_new_tokens=steps, do_sample=False, use_past_kv_cache=True, stop_at_eos=False,
            output_logits=True, verbose=False, **kwargs,
        )
        seqs = out.sequences
        step_logits = torch.stack(list(out.logits), 1).float()  # [b, steps, vocab]
        full_mask = torch.cat([mask, torch.ones(mask.shape[0], steps, dtype=mask.dtype, device=mask.device)], 1)
        fwd_kwargs = {"attention_mask": full_mask} if kwargs else {}
        full = model(seqs, **fwd_kwargs).float()
    if not bool(torch.isfinite(full).all()):  # nothing to judge the cache by: the model itself is broken
        raise DataError(
            "the model's logits are NaN or inf on a full forward (the KV-cache self-check's sequence), so cached "
            "decoding cannot be judged and anything sampled would be garbage: check the model's weights and dtype "
            "(and any hooks attached to it)"
        )
    p = tokens.shape[1]
    ref = full[:, p - 1 : p - 1 + steps]
    err = float((step_logits - ref).abs().max())
    scale = float(ref.abs().max()) or 1.0
    result = KVCacheCheck(
        max_abs_error=err,
        rel_error=err / scale,
        tol=tol,
        versions={d: _version(d) for d in ("transformers", "transformer-lens")},
    )
    _RESULTS[model] = result
    return result


def require_kv_cache(model: Model, *, tol: float = DEFAULT_TOL) -> KVCacheCheck:
    """``check_kv_cache``, raising ``UpstreamError`` (naming the fix) when cached decoding is wrong."""
    result = check_kv_cache(model, tol=tol)
    if not result.ok:
        raise UpstreamError(result.message())
    return result


def _takes_mask(model: Model) -> bool:
    return "attention_mask" in signature(model.generate).parameters
