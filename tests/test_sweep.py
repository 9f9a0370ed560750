"""The layer sweep on tiny models: what zeroing W_pos does, controls at chance, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from pe_hooks import ArgumentError, DataError, SweepResult, sweep, zero
from pe_hooks.models.precision import dtype_name, resolve_dtype
from pe_hooks.reports import write_sweep_markdown
from pe_hooks.viz import plot_sweep
from tests.conftest import get_model

# 64 probe sequences x 63 tokens = 4032 test tokens: the null std of an 8-bin accuracy is ~0.005
MARGIN = 0.03


def _value(res, intervention: str, metric: str, layer: int) -> float:  # type: ignore[no-untyped-def]
    df = res.df
    row = df[(df.intervention == intervention) & (df.metric == metric) & (df.layer == layer)]
    return float(row.value.iloc[0])


@pytest.fixture(scope="module")
def gpt2_sweep():  # type: ignore[no-untyped-def]
    return sweep(get_model("tiny-gpt2"), None, ["baseline", "zero", "remove"], n_seqs=64, progress=False)


def test_zeroing_w_pos_in_bert_reaches_the_token_floor_at_every_layer() -> None:
    """Bidirectional random-init BERT carries position only through W_pos: with it zeroed, every
    layer's probe falls to the token floor (what the text alone says about position)."""
    res = sweep(get_model("tiny-bert"), None, ["baseline", "zero"], n_seqs=64, progress=False)
    floor = res.meta["token_floor_acc"]
    assert floor < res.meta["chance"] + 0.05
    for layer in range(3):
        assert _value(res, "baseline", "acc", layer) > 0.8
        assert abs(_value(res, "zero", "acc", layer) - floor) < MARGIN
        assert _value(res, "zero", "r2", layer) < 0.02


def test_zeroing_w_pos_in_causal_gpt2_leaves_layer0_at_floor_but_attention_recreates_position(gpt2_sweep) -> None:  # type: ignore[no-untyped-def]
    """Causal attention alone encodes position (Haviv et al. 2022; Chi et al. 2023): with W_pos
    zeroed, the embeddings (layer 0) are at the token floor, later layers are not."""
    res = gpt2_sweep
    floor = res.meta["token_floor_acc"]
    assert _value(res, "baseline", "acc", 0) > 0.9
    assert abs(_value(res, "zero", "acc", 0) - floor) < MARGIN
    assert _value(res, "zero", "r2", 0) < 0.02
    assert _value(res, "zero", "r2", 2) > 0.2  # position re-emerges through the causal mask


def test_shuffled_control_is_at_chance_everywhere(gpt2_sweep) -> None:  # type: ignore[no-untyped-def]
    df = gpt2_sweep.df
    shuf = df[df.metric == "acc_shuffled"].value
    chance = df[df.metric == "chance"].value
    assert (abs(shuf.to_numpy() - chance.to_numpy()) < MARGIN).all()
    assert (df[df.metric == "r2_shuffled"].value < 0.02).all()


def test_tidy_frame_and_outputs(gpt2_sweep, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    df = gpt2_sweep.df
    assert list(df.columns) == ["layer", "intervention", "metric", "value", "spread"]
    assert set(df.intervention) == {"baseline", "zero", "remove"}
    assert {"acc", "r2", "mae", "anova_r2", "rel_norm", "eff_rank", "pos_ctx_cos"} <= set(df.metric)
    paths = gpt2_sweep.save(tmp_path)
    assert set(paths) == {"csv", "json"}  # data only: pictures and reports come after
    assert pd.read_csv(paths["csv"]).shape == df.shape
    again = SweepResult.load(tmp_path)
    assert again.df.shape == df.shape and again.meta["model"] == gpt2_sweep.meta["model"]
    md = write_sweep_markdown(gpt2_sweep, tmp_path).read_text()
    assert "| layer | baseline | zero | remove |" in md and "token floor" in md
    fig = plot_sweep(gpt2_sweep, tmp_path / "sweep.png")
    assert isinstance(fig, Figure) and len(fig.axes) >= 4
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_erase_removes_what_it_was_fitted_for() -> None:
    res = sweep(get_model("tiny-llama"), None, ["baseline", "erase"], n_seqs=48, n_fit=48, progress=False)
    for layer in (1, 2):
        assert _value(res, "erase", "acc", layer) < _value(res, "baseline", "acc", layer)


def test_inapplicable_intervention_is_skipped_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="skipping 'bad'"):
        res = sweep(get_model("tiny-llama"), None, {"baseline": None, "bad": lambda m, d: zero(m, site="pos_embed")},
                    n_seqs=16, n_fit=8, progress=False)
    assert "bad" in res.meta["skipped"] and set(res.df.intervention) == {"baseline"}


def test_sweep_errors() -> None:
    model = get_model("tiny-gpt2")
    with pytest.raises(IndexError, match="probe layers 0..2"):
        sweep(model, None, ["baseline"], layers=[7], progress=False)
    with pytest.raises(DataError, match="unknown intervention"):
        sweep(model, None, {"x": "frobnicate"}, n_seqs=8, progress=False)
    with pytest.raises(DataError, match="no interventions"):
        sweep(model, None, {}, progress=False)


def test_cli_writes_table_and_plot(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "pe-hooks"
    out = subprocess.run(
        [str(exe), "sweep", "--model", "tiny-gpt2", "--n-seqs", "16", "--n-fit", "8", "--interventions",
         "baseline,zero", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "sweep-tiny-gpt2"
    assert (folder / "sweep.png").exists() and (folder / "sweep.csv").exists()
    assert "| layer | baseline | zero |" in out.stdout
    # the default --dtype auto: bfloat16 on CPUs that multiply it natively, float32 elsewhere
    meta = json.loads((folder / "sweep.json").read_text())["meta"]
    assert meta["dtype"] == dtype_name(resolve_dtype("auto")) and "--dtype auto" in meta["command"]
    assert "--nonlinear knn_cosine,knn_euclidean,mlp " in meta["command"]  # as typed, so it can be re-run
    bad_dtype = subprocess.run([str(exe), "sweep", "--dtype", "float64", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=120)
    assert bad_dtype.returncode == 2 and "bfloat16" in bad_dtype.stderr
    bad = subprocess.run([str(exe), "sweep", "--model", "no-such-model-xyz", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert bad.returncode == 2 and "unreachable" in bad.stderr


def test_one_pass_mode_gives_the_same_moment_metrics(gpt2_sweep) -> None:  # type: ignore[no-untyped-def]
    one = sweep(get_model("tiny-gpt2"), None, ["baseline", "zero", "remove"], n_seqs=64, evaluate=False, progress=False)
    assert "acc" not in set(one.df.metric)
    a = one.pivot("r2")
    b = gpt2_sweep.pivot("r2")
    assert ((a - b).abs() < 1e-9).all().all()


def test_conditions_without_hooks_share_one_stream_of_forwards() -> None:
    """One forward pass per stream: baseline and offline erasers ride on the same forwards (one pass
    over the probe data; the classifier probes are scored on the sample, not in a second pass),
    plus one pass of each eraser's own fit data."""
    from pe_hooks import load_model
    from pe_hooks.sites.facts import model_facts

    model = load_model("tiny-gpt2")  # own instance: a counting hook is attached for the whole test
    model_facts(model)  # the registry's one-time measurement of which hooks fire (cached per model)
    calls: list[int] = []

    def count(t: torch.Tensor, hook: object) -> None:
        calls.append(int(t.shape[0]))

    model.add_hook("blocks.0.hook_resid_pre", count)  # type: ignore[attr-defined]
    try:
        sweep(model, None, ["baseline", "erase", "erase-pca"], layers=[1], n_seqs=16, n_fit=8, seq_len=16,
              n_bins=4, batch_size=8, progress=False)
    finally:
        model.reset_hooks()  # type: ignore[attr-defined]
    # eraser fits: 8 fit sequences once per eraser (1 batch each); shared stream: 1 pass x 2 batches
    assert len(calls) == 2 * 1 + 1 * 2, calls


def test_shared_stream_erase_equals_the_same_eraser_run_as_hooks_in_its_own_forwards() -> None:
    """Independent reference for the shared stream: the offline ``erase`` condition (transform of the
    baseline's activations) equals the same eraser applied as in-model hooks in a separate stream of
    forwards, at the one probed layer (nothing downstream of it is probed)."""
    from pe_hooks import fit_eraser

    model = get_model("tiny-gpt2")
    kw = dict(layers=[1], n_seqs=12, n_fit=8, seq_len=16, n_bins=4, batch_size=4, token_floor=False, progress=False)

    def hooked(m: object, fit: object) -> object:
        return fit_eraser(m, fit, layers=[1], sequential=False, progress=False).hooks(m)

    df = sweep(model, None, {"baseline": "baseline", "erase": "erase", "hooked": hooked}, **kw).df  # type: ignore[arg-type]
    a = df[df.intervention == "erase"].drop(columns="intervention").reset_index(drop=True)
    b = df[df.intervention == "hooked"].drop(columns="intervention").reset_index(drop=True)
    # the sample is stored in float16 before the offline transform (after it, in-model): the
    # position error differs in the 4th digit, the linear and kNN decisions do not; the MLP, trained
    # by SGD, may flip a token or two of its 180 (measured: 1). The offline moments are derived from
    # the raw ones in float64 (LayerStats.erased), the hooked ones accumulated from float32 erased
    # states: the ridge R^2 / RMSE of this tiny, near-singular fit agree to ~3e-5 relative
    rounding = ["mae", "r2", "rmse", "r2_shuffled"]
    exact = ~a.metric.isin([*rounding, "acc_mlp", "acc_mlp_shuffled"])
    pd.testing.assert_frame_equal(a[exact], b[exact], atol=1e-6, rtol=1e-6)
    close = a.metric.isin(rounding)
    assert np.allclose(a[close].value, b[close].value, rtol=2e-4, atol=1e-6)
    mlp = a.metric.str.startswith("acc_mlp")
    assert mlp.sum() == 2 and np.allclose(a[mlp].value, b[mlp].value, atol=2.5 / 180)
    base = df[(df.intervention == "baseline") & (df.metric == "r2")].value.iloc[0]
    assert a[a.metric == "r2"].value.iloc[0] < base - 0.1  # the eraser did something


def test_nonlinear_probe_columns_with_controls_and_a_bounded_sample() -> None:
    """kNN columns beside the linear probe, each with a shuffled control at chance; the classifier
    sample is bounded by ``sample_seqs`` whatever ``n_seqs`` (the moments use every token)."""
    kw: dict[str, Any] = dict(layers=[1], seq_len=16, n_bins=4, progress=False, token_floor=False)
    res = sweep(get_model("tiny-gpt2"), None, ["baseline"], n_seqs=48, sample_seqs=8, nonlinear_seqs=8, **kw)
    assert res.meta["n_tokens_moments"] == 48 * 15 and res.meta["n_tokens_sample"] == 8 * 15
    metrics = set(res.df.metric)
    for probe in ("knn_cosine", "knn_euclidean"):
        assert {f"acc_{probe}", f"acc_{probe}_shuffled"} <= metrics
    big = sweep(get_model("tiny-gpt2"), None, ["baseline"], n_seqs=48, **kw)
    pv = big.pivot
    assert pv("acc_knn_cosine").iloc[0, 0] > 0.5  # learned W_pos: neighbours share positions
    assert abs(pv("acc_knn_cosine_shuffled").iloc[0, 0] - 0.25) < 0.08
    assert abs(pv("acc_shuffled").iloc[0, 0] - 0.25) < 0.08
    with pytest.raises(ArgumentError, match="knn_cosine"):
        sweep(get_model("tiny-gpt2"), None, ["baseline"], nonlinear=("svm",), **kw)


def test_scoring_threads_do_not_change_the_results_and_the_floor_is_probed_once() -> None:
    """Sites are scored in parallel threads: every value is the same with 1 or 3 of them. The token
    floor depends on the tokens only: probed once, its rows equal under every condition."""
    model = get_model("tiny-gpt2")
    kw: dict[str, Any] = dict(layers=[0, 1, 2], n_seqs=16, n_fit=16, seq_len=16, n_bins=4, sample_seqs=16,
                              nonlinear_seqs=8, progress=False)
    one = sweep(model, None, ["baseline", "zero", "erase"], workers=1, **kw).df
    three = sweep(model, None, ["baseline", "zero", "erase"], workers=3, **kw).df
    pd.testing.assert_frame_equal(one, three)
    floor = one[one.layer == -1].pivot_table(index="metric", columns="intervention", values="value")
    assert floor.shape[1] == 3 and np.allclose(floor.values, floor.values[:, :1], equal_nan=True)
    with pytest.raises(ArgumentError, match="scoring threads"):
        sweep(model, None, ["baseline"], workers=0, **kw)
