"""Erasers fitted through a model: hooks, sequential fitting, save/load, and SmolLM2 for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pe_hooks import DataError, SchemeError, project_out
from pe_hooks.data import load_data, stream_activations
from pe_hooks.erasers import PositionEraser, fit_eraser
from tests.conftest import get_model
from tests.eval_utils import heldout_position_accuracy


def _collect(model: object, td: object, name: str, hooks: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ts, gs = [], [], []
    for b in stream_activations(model, td, [name], batch_size=16, hooks=hooks, progress=False):  # type: ignore[arg-type]
        x = b.acts[name]
        keep = b.positions > 0
        xs.append(x[keep].numpy())
        ts.append(b.positions[keep].numpy())
        gs.append(b.index[:, None].expand_as(b.positions)[keep].numpy())
    return np.concatenate(xs), np.concatenate(ts), np.concatenate(gs)


def test_hooks_equal_offline_transform() -> None:
    model = get_model("tiny-gpt2")
    fit = load_data(model, None, seq_len=32, n_seqs=24)
    test = load_data(model, None, seq_len=32, n_seqs=8, seed=9)
    eraser = fit_eraser(model, fit, method="leace", layers=[1], seq_len=32, progress=False)
    name = "blocks.1.hook_resid_pre"
    raw, t, _ = _collect(model, test, name)
    inside, _, _ = _collect(model, test, name, hooks=eraser.hooks())
    offline = eraser.transform(raw, hook_name=name, positions=t)
    assert np.allclose(inside, offline, atol=1e-5)
    assert not np.allclose(inside, raw, atol=1e-3)


def test_sequential_fits_on_erased_upstream_states() -> None:
    model = get_model("tiny-gpt2")
    td = load_data(model, None, seq_len=32, n_seqs=24)
    indep = fit_eraser(model, td, method="leace", sequential=False, progress=False)
    seq = fit_eraser(model, td, method="leace", progress=False)  # several layers: sequential by default
    n0, n1 = "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"
    assert torch.allclose(indep.maps[n0].left, seq.maps[n0].left, atol=1e-5)  # nothing upstream of layer 0
    assert not torch.allclose(indep.maps[n1].left, seq.maps[n1].left, atol=1e-3)
    assert seq.info.sequential and not indep.info.sequential
    assert seq.info.fit_tokens[n1] == 24 * 31  # BOS excluded
    assert not fit_eraser(model, td, layers=[1], progress=False).info.sequential  # one site: nothing upstream


def _apply(eraser: PositionEraser, name: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    import warnings

    from pe_hooks.core.errors import FitMismatchWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitMismatchWarning)  # offline use of a sequential map: on purpose here
        return torch.as_tensor(eraser.transform(x, hook_name=name, positions=t))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-bloom"])
@pytest.mark.parametrize("method", ["leace", "mean"])
def test_one_pass_sequential_fit_equals_one_partial_forward_per_site(
    name: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-batch sequential fit gives the maps of the per-site partial forwards (its fallback
    for data too big for one batch), and both equal an independent reference: layer 1's map refitted
    by ``fit_on_arrays`` on layer-1 states collected with only layer 0's map hooked in."""
    import pe_hooks.erasers.fit as fit_module
    from pe_hooks.erasers import fit_on_arrays

    model = get_model(name)
    td = load_data(model, None, seq_len=32, n_seqs=24)
    one = fit_eraser(model, td, method=method, batch_size=8, progress=False)
    monkeypatch.setattr(fit_module, "ONE_PASS_BYTES", 0)
    per_site = fit_eraser(model, td, method=method, batch_size=8, progress=False)
    assert one.info.sequential and list(one.maps) == list(per_site.maps)
    x = torch.randn(200, int(model.cfg.d_model)) * 3
    t = torch.randint(1, 32, (200,))
    for n in one.maps:
        a, b = _apply(one, n, x, t), _apply(per_site, n, x, t)
        assert torch.allclose(a, b, atol=2e-3 * float(x.abs().max())), (n, float((a - b).abs().max()))
    n0, n1 = "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"
    upstream = PositionEraser({n0: one.maps[n0]}, one.info, model).hooks(model)
    x1, t1, _ = _collect(model, td, n1, hooks=upstream)
    ref = fit_on_arrays(x1, t1, method=method, name=n1)
    a, r = _apply(one, n1, x, t), _apply(ref, n1, x, t)
    assert torch.allclose(a, r, atol=2e-3 * float(x.abs().max())), float((a - r).abs().max())
    if method == "leace":  # LEACE always removes its 17 Fourier directions ("mean" may find no signal left)
        assert not torch.allclose(a, x, atol=1e-2)


def test_sequential_fit_follows_forward_order_whatever_the_order_given() -> None:
    model = get_model("tiny-gpt2")
    td = load_data(model, None, seq_len=32, n_seqs=16)
    names = ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.hook_resid_pre"]
    er = fit_eraser(model, td, hook_names=names, progress=False)
    assert list(er.maps) == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"]


def test_mismatched_use_of_a_fitted_eraser_warns_naming_the_fix() -> None:
    """In-model hooks of an independently fitted multi-layer eraser, and offline transforms of a
    sequentially fitted one's downstream layers, meet distributions they were not fitted on."""
    from pe_hooks.core.errors import FitMismatchWarning

    model = get_model("tiny-gpt2")
    td = load_data(model, None, seq_len=32, n_seqs=16)
    indep = fit_eraser(model, td, sequential=False, progress=False)
    seq = fit_eraser(model, td, progress=False)
    with pytest.warns(FitMismatchWarning, match=r"fit_eraser\(model, data\) \(sequential by default\)"):
        indep.hooks(model)
    with pytest.warns(FitMismatchWarning, match="sequential=False"):
        seq.transform(torch.randn(3, 64), layer=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FitMismatchWarning)
        seq.hooks(model)  # the right uses stay silent
        indep.transform(torch.randn(3, 64), layer=1)
        seq.transform(torch.randn(3, 64), layer=0)  # first layer: nothing upstream


@pytest.mark.kv_cache
def test_mean_eraser_hooks_follow_kv_cache_positions() -> None:
    model = get_model("tiny-gpt2")
    eraser = fit_eraser(model, None, method="mean", seq_len=48, n_seqs=24, progress=False)
    prompt = torch.tensor([[0, 40, 52, 61, 77]])
    with eraser.hooks(model).applied(model), torch.no_grad():
        out = model.generate(prompt, max_new_tokens=4, do_sample=False, verbose=False,  # type: ignore[attr-defined]
                             use_past_kv_cache=True, output_logits=True, stop_at_eos=False)
        full = model(out.sequences)  # type: ignore[operator]
    assert float((torch.stack(out.logits, 1) - full[:, 4:-1]).abs().max()) < 1e-5


def test_save_load_with_model_checks(tmp_path: Path) -> None:
    model = get_model("tiny-gpt2")
    e = fit_eraser(model, None, method="pca", k=3, seq_len=32, n_seqs=16, progress=False)
    folder = e.save(tmp_path / "e")
    back = PositionEraser.load(folder, model=model)
    x = torch.randn(5, 64)
    assert torch.equal(e.transform(x, layer=0), back.transform(x, layer=0))
    with pytest.raises(SchemeError, match="cannot run on a model with d_model"):
        PositionEraser.load(folder, model=get_model("minilm-l6"))
    with pytest.raises(SchemeError, match="fitted on 'tiny-gpt2'"):
        PositionEraser.load(folder, model=get_model("tiny-llama"))
    assert project_out(model, back).names == back.hooks().names


def test_fit_errors() -> None:
    model = get_model("tiny-gpt2")
    with pytest.raises(DataError, match="single direction"):
        fit_eraser(model, None, features="integer")
    with pytest.raises(DataError, match="does not exist"):
        fit_eraser(get_model("tiny-neox"), None, site="resid_mid")
    with pytest.raises(IndexError, match="layers 0..1"):
        fit_eraser(model, None, layers=[3])
    with pytest.raises(DataError, match="exceeds the context"):
        fit_eraser(model, None, seq_len=1000)


def test_smollm2_leace_brings_heldout_probe_near_chance() -> None:
    """Real model: fit on 48 sequences, probe 48 others (grouped folds). Chance = 1/8."""
    model = get_model("smollm2-135m")
    fit = load_data(model, None, seq_len=64, n_seqs=48)
    test = load_data(model, None, seq_len=64, n_seqs=96).subset(list(range(48, 96)))
    layers = [3, 15]
    eraser = fit_eraser(model, fit, method="leace", n_freqs=4, layers=layers, sequential=False, progress=False)
    for layer in layers:
        name = f"blocks.{layer}.hook_resid_pre"
        x, t, g = _collect(model, test, name)
        raw = heldout_position_accuracy(x, t, g)
        erased = heldout_position_accuracy(eraser.transform(x, hook_name=name, positions=t), t, g)
        assert raw > 0.3, (layer, raw)
        assert erased < raw - 0.1 and erased < 0.125 + 0.1, (layer, raw, erased)
