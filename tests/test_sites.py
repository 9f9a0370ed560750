"""Every site ``inspect`` reports really fires; sites known not to fire are not reported."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from pe_hooks import Scheme, SchemeError, inspect
from tests.conftest import REAL, TINY, get_model

EXPECTED = {
    "tiny-gpt2": Scheme.LEARNED,
    "tiny-neox": Scheme.ROTARY,
    "tiny-llama": Scheme.ROTARY,
    "tiny-bloom": Scheme.ALIBI,
    "tiny-bert": Scheme.LEARNED,
    "smollm2-135m": Scheme.ROTARY,
    "minilm-l6": Scheme.LEARNED,
}


def _count_calls(model: object, names: list[str], tokens: torch.Tensor) -> Counter[str]:
    counts: Counter[str] = Counter()

    def make(n: str):  # type: ignore[no-untyped-def]
        def fn(t: torch.Tensor, hook: object) -> None:
            counts[n] += 1

        return fn

    with model.hooks(fwd_hooks=[(n, make(n)) for n in names]):  # type: ignore[attr-defined]
        with torch.no_grad():
            model(tokens)  # type: ignore[operator]
    return counts


def _tokens(model: object) -> torch.Tensor:
    return model.to_tokens(["position is a confound in every plot"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", TINY + REAL)
def test_every_reported_site_fires(name: str) -> None:
    model = get_model(name)
    scheme = inspect(model)
    assert scheme.scheme is EXPECTED[name]
    names = scheme.firing_hooks()
    assert len(names) >= 3 * scheme.n_layers
    counts = _count_calls(model, names, _tokens(model))
    silent = [n for n in names if counts[n] == 0]
    assert not silent, f"{name}: reported sites that never fired: {silent}"


@pytest.mark.parametrize("name", TINY + REAL)
def test_known_silent_hooks_are_not_reported_and_really_never_fire(name: str) -> None:
    model = get_model(name)
    scheme = inspect(model)
    reported = set(scheme.firing_hooks())
    silent = [t.replace("*", "0") for t in scheme.never_fire]
    for n in silent:
        assert n not in reported
        assert n in model.hook_dict, f"{n} should exist on {name} (it is listed as a trap)"  # type: ignore[attr-defined]
    if silent:
        counts = _count_calls(model, silent, _tokens(model))
        assert sum(counts.values()) == 0, f"{name}: hooks listed as never firing fired: {counts}"


def test_rotary_models_do_not_report_pos_embed() -> None:
    for name in ["tiny-llama", "tiny-neox", "smollm2-135m"]:
        scheme = inspect(get_model(name))
        assert scheme.pos_embed is None
        assert "hook_pos_embed" in scheme.never_fire


def test_neox_rot_qk_not_reported_llama_rot_qk_reported() -> None:
    assert inspect(get_model("tiny-neox")).rot_q == ()
    assert len(inspect(get_model("tiny-llama")).rot_q) == 2


def test_smollm2_facts() -> None:
    s = inspect(get_model("smollm2-135m"))
    assert (s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.d_head) == (30, 576, 9, 3, 64)
    assert s.rotary_base == (1e5,) * 30  # bridge cfg.rotary_base says 10000: wrong, not used
    assert s.rotary_dim == 64
    assert len(s.layer_cos) == 30 and len(s.rot_q) == 30
    text = s.summary()
    assert "base 100000" in text and "rot_q" in text and "blocks.29.attn.hook_cos" in text


def test_minilm_facts() -> None:
    s = inspect(get_model("minilm-l6"))
    assert s.w_pos_shape == (512, 384)
    assert s.pos_embed == "hook_pos_embed"
    assert not s.attn_scores_editable
    assert "512x384" in s.summary()


def test_neox_partial_rotary_dim() -> None:
    s = inspect(get_model("tiny-neox"))
    assert s.rotary_dim == 8 and s.d_head == 16
    assert "resid_mid" not in s.resid


def test_layer_validation() -> None:
    s = inspect(get_model("tiny-gpt2"))
    assert s.check_layers([0, -1]) == [0, 1]
    with pytest.raises(IndexError, match="layers 0..1"):
        s.check_layers([2])
    with pytest.raises(KeyError, match="available"):
        inspect(get_model("tiny-neox")).resid_hook(0, "resid_mid")


def test_inspect_rejects_non_models() -> None:
    with pytest.raises(TypeError, match="load_model"):
        inspect(object())


def test_unknown_architecture_is_a_clear_error() -> None:
    model = get_model("tiny-gpt2")

    class Fake:
        hook_dict: dict[str, object] = {}
        cfg = model.cfg  # type: ignore[attr-defined]
        hook_aliases: dict[str, str] = {}

        def run_with_hooks(self) -> None: ...

        original_model = torch.nn.Linear(1, 1)

    with pytest.raises(
        SchemeError, match=r"cannot edit the positions of architecture 'Linear'.*forward failed.*probes .*still work"
    ):
        inspect(Fake())


def _module_hooks(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    kinds = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
    return {n: tuple(len(getattr(m, k)) for k in kinds) for n, m in model.named_modules()}


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "GPT2LMHeadModel", "BloomForCausalLM"])
def test_inspect_adds_no_hook_on_any_module(arch: str) -> None:
    """``inspect`` measures with a forward and leaves no hook behind on ANY module (not only the
    hook points and the HF model: ``test_architectures``). TransformerLens wires its own capture
    hooks into the blocks (8 forward pre-hooks on a 4-layer Llama) on a bridge's first forward,
    whoever runs it, so the fresh bridge runs one plain forward first."""
    from pe_hooks.cli.arch_check import build_pair

    g, _ = build_pair(arch)
    with torch.no_grad():
        g(torch.tensor([[1, 40, 52, 61]]))  # type: ignore[operator]
    before = _module_hooks(g)  # type: ignore[arg-type]
    inspect(g)
    assert _module_hooks(g) == before  # type: ignore[arg-type]
