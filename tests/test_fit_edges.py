"""Issue 23, cases 6 and 8: every fit path names the layer of non-finite activations, and an
eraser fitted on fewer tokens than the model's width says so (``UnderfitWarning`` naming the fix)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import pe_hooks as p
from pe_hooks import DataError
from pe_hooks.core.errors import UnderfitWarning
from pe_hooks.models import load_model
from tests.conftest import get_model, hook_counts


def _nan_after_block_0() -> Any:
    """tiny-gpt2 (its own instance) whose block 0 writes NaN: layer 0's input is finite, layer 1's is not."""
    model = load_model("tiny-gpt2")
    bias = next(w for n, w in model.named_parameters() if ".h.0." in n and "c_proj" in n and n.endswith("bias"))
    with torch.no_grad():
        bias.fill_(float("nan"))
    return model


@pytest.mark.parametrize("path", ["sequential, one pass", "sequential, one forward per site", "independent"])
def test_every_fit_path_names_the_layer_of_non_finite_activations(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _nan_after_block_0()
    before = hook_counts(model)
    if path == "sequential, one forward per site":
        monkeypatch.setattr("pe_hooks.erasers.fit.ONE_PASS_BYTES", 0)
    with pytest.raises(DataError, match=r"non-finite activations \(NaN/inf\) at blocks\.1\.hook_resid_pre; check the model"):
        p.fit_eraser(model, None, layers=[0, 1], seq_len=16, n_seqs=8, sequential=path != "independent", progress=False)
    assert hook_counts(model) == before  # nothing left attached


@pytest.mark.parametrize("erase", ["erase", "erase-mean", "erase-pca", "erase-quadratic"])
def test_a_sweep_stops_on_non_finite_fit_activations_naming_the_hook_point(erase: str) -> None:
    """The sweep skips an intervention that does not apply to the model (a SchemeError); non-finite
    activations are bad data, not inapplicability: a DataError (it was 'every intervention was
    skipped', an ArgumentError, or with a baseline beside it a warning and a sweep without the eraser)."""
    model = _nan_after_block_0()
    before = hook_counts(model)
    with pytest.raises(DataError, match=r"non-finite activations \(NaN/inf\) at blocks\.1\.hook_resid_pre; check the model"):
        p.sweep(model, None, [erase], layers=[1], seq_len=16, n_seqs=8, n_fit=16, n_bins=4, folds=2, token_floor=False,
                nonlinear=(), progress=False)
    assert hook_counts(model) == before


def test_an_eraser_fitted_on_fewer_tokens_than_the_width_warns_naming_the_fix() -> None:
    model = get_model("tiny-gpt2")  # d_model 64
    with pytest.warns(UnderfitWarning, match=r"22 tokens.*d_model 64.*n_seqs.*n_fit"):
        p.fit_eraser(model, None, n_seqs=2, seq_len=12, layers=[0], progress=False)
    with pytest.warns(UnderfitWarning, match="n_fit"):
        p.sweep(model, None, ["baseline", "erase"], layers=[0], n_seqs=8, n_fit=2, seq_len=16, n_bins=4, folds=2,
                token_floor=False, nonlinear=(), progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnderfitWarning)  # enough tokens: no warning
        p.fit_eraser(model, None, n_seqs=8, seq_len=16, layers=[0], progress=False)


def test_a_quadratic_fit_with_too_few_tokens_per_bin_names_only_fixes_that_exist() -> None:
    """At n_bins=2 'use fewer bins (n_bins < 2)' named a fix that is refused (n_bins >= 2)."""
    model = get_model("tiny-gpt2")
    with pytest.raises(DataError) as info:
        p.fit_eraser(model, None, method="quadratic", n_bins=2, n_seqs=2, seq_len=12, layers=[0], progress=False)
    msg = str(info.value)
    assert "n_bins < 2" not in msg and "fewer bins" not in msg, msg
    assert "more or longer sequences (n_seqs=, seq_len=)" in msg and "Quadratic(min_per_bin=" in msg, msg
    with pytest.raises(DataError, match=r"use fewer bins \(n_bins < 8\)"):  # where fewer bins exist, they are named
        p.fit_eraser(model, None, method="quadratic", n_seqs=2, seq_len=12, layers=[0], progress=False)


def test_sampling_branches_from_non_finite_logits_names_the_hook_point() -> None:
    """``branches`` on a model whose residual turns NaN: it was a ValueError from inside
    torch.distributions (Categorical's logits constraint) during TransformerLens' generate."""
    model = _nan_after_block_0()
    before = hook_counts(model)
    with pytest.raises(DataError, match=r"non-finite activations \(NaN/inf\) at blocks\.1\.hook_resid_post .*while sampling"):
        p.branches(model, "Hello there", n_branches=2, max_new_tokens=4, layers=[0], progress=False, kv_cache=False)
    assert hook_counts(model) == before


@pytest.mark.parametrize("kv_cache", [None, True])
def test_the_kv_cache_check_does_not_blame_upstream_for_a_non_finite_model(kv_cache: bool | None) -> None:
    """NaN logits made the KV-cache self-check report 'an upstream bug ... install the tested pair'
    (naming the very pair installed): an UpstreamWarning (kv_cache=None) or UpstreamError (True)."""
    import warnings

    from pe_hooks.models.kv_check import check_kv_cache

    model = _nan_after_block_0()
    with pytest.raises(DataError, match=r"logits are NaN or inf on a full forward.*check the model's weights and dtype"):
        check_kv_cache(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", p.UpstreamWarning)
        with pytest.raises(DataError, match="NaN or inf"):
            p.branches(model, "Hello there", n_branches=2, max_new_tokens=4, layers=[0], progress=False, kv_cache=kv_cache)
