"""Sampling branches on causal models: latents equal to those computed inside the cached decoding
loop, left padding, seeding, the automatic layer choice, views, the planted picture (raw = one
positional path, erased = the branches separate), the figure, bad input, and the CLI end to end on
a tiny model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pe_hooks import ArgumentError, DataError, HookList, zero
from pe_hooks.branching import BranchLatents, branches
from pe_hooks.branching.analysis import analyze
from pe_hooks.branching.scores import verdict
from pe_hooks.branching.views import erase_crossfit, make_views
from pe_hooks.erasers import fit_on_arrays
from tests.conftest import get_model
from tests.test_separation import planted

CAUSAL = ["tiny-gpt2", "tiny-neox", "tiny-llama", "tiny-bloom"]


def _decode_capture(model: object, hook_name: str) -> tuple[HookList, list[torch.Tensor]]:
    seen: list[torch.Tensor] = []

    def grab(t: torch.Tensor, hook: object) -> None:
        seen.append(t.detach().clone())

    return HookList([(hook_name, grab)], label="capture"), seen


@pytest.mark.kv_cache
@pytest.mark.parametrize("name", CAUSAL)
def test_collected_latents_equal_those_computed_while_decoding(name: str) -> None:
    """Generate-then-forward == the latents the KV-cache decoding loop itself computed.

    The capture hook rides along as the ``hooks`` of ``branches``: it sees every cached decoding
    step (one new token each) and then the collection forward. Generated token ``j`` is the input
    of decoding step ``j + 1``, so steps 1..N-1 hold the decode-time latents of tokens 0..N-2.
    """
    model = get_model(name)
    new = 6
    hooks, seen = _decode_capture(model, "blocks.1.hook_resid_pre")
    res = branches(model, "hello there", n_branches=3, max_new_tokens=new, layers=[1], hooks=hooks, massive=None,
                   progress=False)
    steps = [s for s in seen if s.shape[1] == 1]
    assert len(steps) >= new - 1, f"expected cached one-token steps, saw shapes {[tuple(s.shape) for s in seen]}"
    decoded = torch.cat(steps[: new - 1], 1)  # [branches, new - 1, d]
    collected = torch.as_tensor(res.latents[1]).reshape(3, new, -1)[:, : new - 1]
    diff = float((decoded - collected).abs().max())
    assert diff <= 1e-5, f"{name}: collected latents differ from the decoding loop's by {diff:.2e}"
    # the collection forward is the last call and spans the whole sequence
    assert seen[-1].shape[1] == res.prompt_len + new


@pytest.mark.kv_cache
def test_left_padded_prompts_match_unpadded_runs() -> None:
    """Prompts of different lengths share a left-padded batch; each branch's latents (collected
    and decode-time) must equal an independent, unpadded forward of that branch alone."""
    model = get_model("tiny-llama")
    new = 5
    hooks, seen = _decode_capture(model, "blocks.1.hook_resid_pre")
    res = branches(model, ["hi", "a much longer prompt here"], n_branches=2, max_new_tokens=new, layers=[1],
                   hooks=hooks, massive=None, progress=False)
    assert res.sequences is not None and res.prompt is not None
    assert np.array_equal(res.prompt, np.repeat([0, 1], 2 * new))
    short_len = int(model.to_tokens("hi").shape[1])  # type: ignore[attr-defined]
    lat = res.latents[1].reshape(4, new, -1)
    steps = torch.cat([s for s in seen if s.shape[1] == 1][: new - 1], 1)
    for i in range(4):
        real = res.sequences[i] if i >= 2 else res.sequences[i, res.prompt_len - short_len :]
        _, cache = model.run_with_cache(real[None], names_filter="blocks.1.hook_resid_pre")  # type: ignore[attr-defined]
        ref = cache["blocks.1.hook_resid_pre"][0, -new:]
        assert float((torch.as_tensor(lat[i]) - ref).abs().max()) <= 1e-5, f"branch {i}: collected != unpadded"
        assert float((steps[i] - ref[: new - 1]).abs().max()) <= 1e-5, f"branch {i}: decoding != unpadded"
        want_pos = np.arange(len(real) - new, len(real))
        assert np.array_equal(res.position.reshape(4, new)[i], want_pos), "positions must ignore padding"


def test_latents_shapes_and_seeding() -> None:
    model = get_model("tiny-llama")
    kw = dict(n_branches=3, max_new_tokens=6, layers=[0, 1], progress=False)
    a = branches(model, "hello", **kw)  # type: ignore[arg-type]
    b = branches(model, "hello", **kw)  # type: ignore[arg-type]
    c = branches(model, "hello", seed=1, **kw)  # type: ignore[arg-type]
    assert a.latents[1].shape == (18, 64) and set(a.latents) == {0, 1}
    assert np.array_equal(a.branch, np.repeat(np.arange(3), 6))
    assert a.position.min() == a.prompt_len  # generated tokens only (BOS/prompt excluded)
    assert len(a.token) == 18 and len(a.texts) == 3 and set(a.flagged) == {0, 1}
    assert a.sequences is not None and b.sequences is not None and c.sequences is not None
    assert torch.equal(a.sequences, b.sequences) and np.array_equal(a.latents[1], b.latents[1])
    assert not torch.equal(a.sequences, c.sequences), "another seed should sample other branches"
    assert len({tuple(s.tolist()) for s in a.sequences}) > 1, "branches should differ"
    before = torch.random.get_rng_state()
    branches(model, "hello", **kw)  # type: ignore[arg-type]
    assert torch.equal(before, torch.random.get_rng_state()), "the global RNG must be left alone"


def test_intervened_branches_differ() -> None:
    model = get_model("tiny-llama")
    a = branches(model, "hello", n_branches=2, max_new_tokens=4, layers=[1], progress=False)
    b = branches(model, "hello", n_branches=2, max_new_tokens=4, layers=[1], hooks=zero(model), progress=False)
    assert not np.allclose(a.latents[1], b.latents[1])


def test_massive_tokens_are_flagged_per_layer_and_left_out() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x[7] *= 100.0
    lat = BranchLatents.from_arrays(x, np.repeat([0, 1], 20), np.tile(np.arange(20), 2), layer=3, massive=8.0)
    assert np.flatnonzero(lat.flagged[3]).tolist() == [7]
    xv, _, pv = lat.view(3)
    assert len(xv) == 40 - 1 - 2  # the massive row and the two position-0 rows
    assert (pv > 0).all() and not np.isclose(np.linalg.norm(xv, axis=1), np.linalg.norm(x[7])).any()
    with pytest.raises(KeyError, match="not collected"):
        lat.view(0)


def test_crossfit_never_erases_a_token_with_an_eraser_that_saw_it() -> None:
    rng = np.random.default_rng(0)
    n_b, t = 8, 10
    x = rng.normal(size=(n_b * t, 4))
    b, p = np.repeat(np.arange(n_b), t), np.tile(np.arange(1, t + 1), n_b)
    fitted_on: list[set[int]] = []
    erased_rows: list[set[int]] = []

    class Recorder:
        def __init__(self, rows: set[int]) -> None:
            self.rows = rows

        def transform(self, xx: np.ndarray, *, positions: object = None) -> np.ndarray:
            erased_rows.append({int(v) for v in np.round(xx[:, 0] * 1e6)})
            return xx

    x[:, 0] = np.arange(len(x)) / 1e6  # row ids in column 0, to see which rows go where

    def fit(xx: np.ndarray, pp: np.ndarray) -> Recorder:
        rows = {int(v) for v in np.round(xx[:, 0] * 1e6)}
        fitted_on.append(rows)
        return Recorder(rows)

    out = erase_crossfit(x, b, p, fit=fit, n_folds=4)
    assert np.allclose(out, x) and len(fitted_on) == 4
    assert all(not (f & e) for f, e in zip(fitted_on, erased_rows)), "a fold was erased by its own fit"
    assert set().union(*erased_rows) == set(range(len(x)))
    # branches are never split across folds
    for e in erased_rows:
        assert {int(b[i]) for i in e}.isdisjoint({int(b[i]) for i in set(range(len(x))) - e})


def test_make_views_with_an_injected_eraser() -> None:
    """Any object with .transform works; a PositionEraser-style one also receives layer=."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    lat = BranchLatents.from_arrays(x, np.repeat([0, 1, 2], 20), np.tile(np.arange(1, 21), 3), layer=5)
    calls: list[dict[str, object]] = []

    class WithLayer:
        def transform(self, xx: np.ndarray, *, layer: int | None = None, positions: object = None) -> np.ndarray:
            calls.append({"layer": layer})
            return xx * 0 + 1

    views = make_views(lat, 5, eraser=WithLayer(), eraser_name="e", crossfit=True, intervened=lat, early=5)
    assert list(views) == ["raw", "e", "erased (branches, out-of-sample)", "intervened", "early (layer 5)"]
    assert calls == [{"layer": 5}] and np.all(views["e"][0] == 1)
    assert views["erased (branches, out-of-sample)"][0].shape == x.shape


def test_auto_layers_score_every_layer_and_keep_the_chosen_one(tmp_path: Path) -> None:
    model = get_model("tiny-llama")
    kw = dict(n_branches=3, max_new_tokens=8, progress=False)
    lat = branches(model, ["hello there", "the cat"], **kw)  # type: ignore[arg-type]
    assert lat.layer_scores is not None and list(lat.layer_scores["layer"]) == [0, 1]
    assert {"position_share", "position_share_null", "measurable", "position_r2", "path_ratio"} <= set(
        lat.layer_scores.columns)
    assert len(lat.auto_layers) == 1 and sorted(lat.latents) == lat.auto_layers == sorted(lat.flagged)
    both = branches(model, ["hello there", "the cat"], layers=["auto", 0], auto_layers=2, **kw)  # type: ignore[arg-type]
    assert both.auto_layers == [0, 1] and sorted(both.latents) == [0, 1]
    # the chosen layer's latents are exactly those an explicit request collects
    explicit = branches(model, ["hello there", "the cat"], layers=lat.auto_layers, **kw)  # type: ignore[arg-type]
    layer = lat.auto_layers[0]
    np.testing.assert_array_equal(explicit.latents[layer], lat.latents[layer])
    assert explicit.layer_scores is None and explicit.auto_layers == []
    saved = json.loads(lat.save(tmp_path / "b")["json"].read_text())
    assert saved["auto_layers"] == lat.auto_layers and len(saved["layer_scores"]) == 2


def test_planted_picture_raw_follows_one_path_and_erased_separates() -> None:
    """The phenomenon, planted: a strong positional drift shared by all branches hides per-branch
    offsets. The raw view must read "same path" (path ratio far below its shuffled null), both
    erased views "branches separate" (far above it), with kNN branch purity rising from ~0.57 to
    ~0.95 (null ~0.12). Measured over seeds 1, 3, 7, 11: raw 0.40-0.41, erased 1.49-1.53."""
    x, b, t = planted(seed=3)
    ref_x, _, ref_t = planted(seed=103)  # other "text" to fit the eraser on
    lat = BranchLatents.from_arrays(x, b, t, layer=4)
    reference = fit_on_arrays(ref_x, ref_t, method="leace", n_freqs=4, exempt_first=False)
    views = make_views(lat, 4, eraser=reference, eraser_name="erased", crossfit=True)
    res = analyze(views, layer=4, embed=False, n_perm=50, progress=False)
    m = {(r["view"], r["metric"]): r["value"] for r in res.rows if r["space"] == "original"}

    def reads(view: str) -> str:
        return verdict(m[(view, "path_ratio")], m[(view, "path_ratio_null_lo")], m[(view, "path_ratio_null_hi")])

    assert reads("raw") == "same path" and m[("raw", "path_ratio")] < 0.6
    assert m[("raw", "position_r2")] > 0.9
    for view in ("erased", "erased (branches, out-of-sample)"):
        assert reads(view) == "branches separate" and m[(view, "path_ratio")] > 1.3
        assert m[(view, "knn_branch_purity")] > 0.85 > m[("raw", "knn_branch_purity")] + 0.2
        assert m[(view, "knn_branch_purity_null_hi")] < 0.2
        assert m[(view, "position_r2")] < 0.1  # position can no longer be read either
    for view in ("raw", "erased"):
        assert abs(m[(view, "path_ratio_null")] - 1) < 0.05


def test_plot_branches_draws_one_panel_per_view_with_the_scores(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from pe_hooks.viz import plot_branches

    rng = np.random.default_rng(0)
    b, t = np.repeat(np.arange(3), 12), np.tile(np.arange(1, 13), 3)
    views = {"raw": (rng.normal(size=(36, 4)), b, t), "erased": (rng.normal(size=(36, 4)), b, t)}
    res = analyze(views, embed=False, n_perm=10, progress=False)
    res.embeddings = {k: v[0][:, :2] for k, v in views.items()}  # any 2-D layout will do here
    fig = plot_branches(res, tmp_path / "b.png", title="tiny")
    assert isinstance(fig, Figure) and (tmp_path / "b.png").stat().st_size > 5_000
    panels = [ax for ax in fig.axes if ax.get_title() or ax.get_ylabel()]
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 4  # 2 rows x 2 views
    titles = [ax.get_title() for ax in panels if ax.get_title()]
    assert len(titles) == 2 and all("path ratio" in s and "branch purity" in s and "null" in s for s in titles)
    assert fig.get_suptitle().startswith("tiny")


def test_branch_errors() -> None:
    model = get_model("tiny-llama")
    with pytest.raises(DataError, match="non-empty prompt"):
        branches(model, [], progress=False)
    with pytest.raises(DataError, match="non-empty prompt"):
        branches(model, [" "], progress=False)
    with pytest.raises(IndexError, match="layers 0..1"):
        branches(model, "x", layers=[5], progress=False)
    with pytest.raises(DataError, match="exceed the context"):
        branches(model, "x", max_new_tokens=10_000, progress=False)
    with pytest.raises(DataError, match="not a causal"):
        branches(get_model("tiny-bert"), "x", progress=False)
    with pytest.raises(ArgumentError, match="n_branches must be >= 2"):
        branches(model, "x", n_branches=1, progress=False)
    with pytest.raises(ArgumentError, match="temperature"):
        branches(model, "x", temperature=0.0, progress=False)
    with pytest.raises(KeyError, match="resid_pre"):
        branches(model, "x", site="resid_nowhere", progress=False)
    with pytest.raises(DataError, match=r"\[n, d\]"):
        BranchLatents.from_arrays(np.zeros(5), np.zeros(5), np.zeros(5))
    with pytest.raises(ArgumentError, match="auto"):
        branches(model, "x", layers="middle", progress=False)
    with pytest.raises(ArgumentError, match="at least one layer"):
        branches(model, "x", layers=[], progress=False)
    with pytest.raises(IndexError, match="layers 0..1"):
        branches(model, "x", layers=["auto", 7], progress=False)


def test_intervention_specs() -> None:
    from pe_hooks.branching.run import intervention_hooks
    from pe_hooks.cli.branches_cmd import parse_intervention

    assert parse_intervention("zero") == ("zero", None, None)
    assert parse_intervention("replace:shift=3") == ("replace", "shift", 3.0)
    with pytest.raises(DataError, match="unknown --intervention"):
        parse_intervention("blur")
    with pytest.raises(DataError, match="needs a value"):
        parse_intervention("replace:shift")
    model = get_model("tiny-llama")
    assert intervention_hooks(model, "none", 16) is None
    for spec in ("zero", "remove", "replace:shuffle", "replace:reverse", "replace:constant=0", "replace:scale=0.5"):
        assert len(intervention_hooks(model, spec, 16)) > 0, spec


@pytest.mark.slow  # ~1-2 min on 2 shared cores: 5 views x UMAP (numba JIT on first use)
def test_cli_end_to_end_on_a_tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pe_hooks.cli import branches_cmd
    from pe_hooks.cli.main import build_parser

    monkeypatch.setattr("pe_hooks.load_model", lambda name, **kw: get_model(name))
    args = build_parser().parse_args([
        "branches", "--model", "tiny-llama", "--prompt", "hello", "--prompt", "the cat sat", "--branches", "3",
        "--tokens", "10", "--early", "0", "--fit-seqs", "8", "--intervention", "zero", "--n-perm", "20",
        "--out", str(tmp_path),
    ])
    assert isinstance(args, argparse.Namespace) and args.func is branches_cmd.run and args.layer is None
    assert args.func(args) == 0
    out = tmp_path / "branches-tiny-llama"
    chosen = json.loads((out / "texts.json").read_text())["auto_layers"]
    assert len(chosen) == 1
    assert (out / f"branches-layer{chosen[0]}.png").stat().st_size > 10_000
    df = pd.read_csv(out / "metrics.csv")
    want = {"raw", "erased (leace, reference)", "erased (branches, out-of-sample)", "intervened (zero)", "shuffled",
            "chance"}
    assert want <= set(df["view"])
    assert {"path_ratio", "path_ratio_null", "knn_branch_purity_null_hi", "position_r2"} <= set(df["metric"])
    assert np.isfinite(df[df["metric"] != "knn_cross_position_agreement"]["value"]).all()
    scores = pd.read_csv(out / "layer-scores.csv")
    assert list(scores["layer"]) == [0, 1] and scores.loc[scores["chosen"], "layer"].tolist() == chosen
    texts = json.loads((out / "texts.json").read_text())
    assert len(texts["texts"]) == 6 and texts["prompts"] == ["hello", "the cat sat"]
    md = (out / "branches.md").read_text()
    assert f"## Layer {chosen[0]}" in md and "## Layer choice" in md and "auto chose layer" in md
    assert "| raw | original | **" in md and "## Generated continuations" in md
    # explicit layers still work, next to "auto"
    args = build_parser().parse_args([
        "branches", "--model", "tiny-llama", "--prompt", "hello", "--branches", "2", "--tokens", "6",
        "--layer", "0", "--layer", "-1", "--fit-seqs", "8", "--intervention", "none", "--n-perm", "10",
        "--out", str(tmp_path / "explicit"),
    ])
    assert args.layer == [0, -1] and args.func(args) == 0
    out = tmp_path / "explicit" / "branches-tiny-llama"
    assert {p.name for p in out.glob("*.png")} == {"branches-layer0.png", "branches-layer1.png"}
    assert not (out / "layer-scores.csv").exists()


@pytest.mark.kv_cache
@pytest.mark.slow  # loads SmolLM2-135M and samples on it
def test_smollm2_collected_latents_equal_decoding_latents() -> None:
    """The same equality on the real rotary model, at its middle and last layer. Tolerance: 1e-4
    relative to the largest latent entry (float32 accumulation order differs between a cached
    one-token step and a full forward; test_generation.py uses 1e-4 on SmolLM2 logits)."""
    model = get_model("smollm2-135m")
    new = 5
    names = ["blocks.15.hook_resid_pre", "blocks.29.hook_resid_pre"]
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def grab(name: str):  # type: ignore[no-untyped-def]
        def fn(t: torch.Tensor, hook: object) -> None:
            seen[name].append(t.detach().clone())

        return fn

    res = branches(model, ["The ocean is", "To fix a slow Python program,"], n_branches=2, max_new_tokens=new,
                   layers=[15, 29], hooks=HookList([(n, grab(n)) for n in names]), massive=None, progress=False)
    for layer, name in zip((15, 29), names):
        decoded = torch.cat([s for s in seen[name] if s.shape[1] == 1][: new - 1], 1)
        collected = torch.as_tensor(res.latents[layer]).reshape(4, new, -1)[:, : new - 1]
        rel = float((decoded - collected).abs().max() / collected.abs().max())
        assert rel <= 1e-4, f"layer {layer}: relative difference {rel:.2e}"


@pytest.mark.kv_cache  # needs a correct stack as its baseline
def test_wrong_kv_cache_falls_back_to_uncached_decoding_with_a_warning() -> None:
    """A stack whose cached steps are wrong (simulated: a hook that shifts one-token forwards only,
    as a broken cache would) must not yield silently wrong branches: ``branches`` warns, naming the
    fix, and decodes without the cache — the result equals clean uncached decoding exactly;
    ``kv_cache=True`` refuses instead."""
    from pe_hooks import apply_hooks
    from pe_hooks.core.errors import UpstreamError, UpstreamWarning
    from pe_hooks.models import load_model

    model = load_model("tiny-llama")  # own instance: the self-check is cached per model

    def broken_cache(t: torch.Tensor, hook: object) -> torch.Tensor:
        return t + 0.5 if t.shape[1] == 1 else t

    kw = dict(n_branches=2, max_new_tokens=6, layers=[1], massive=None, progress=False)
    with apply_hooks(model, [("hook_embed", broken_cache)]):
        with pytest.warns(UpstreamWarning, match=r"transformers==5\.23\.0"):
            fell_back = branches(model, "hello there", **kw)  # type: ignore[arg-type]
        with pytest.raises(UpstreamError, match="kv_cache=False"):
            branches(model, "hello there", kv_cache=True, **kw)  # type: ignore[arg-type]
    clean = branches(get_model("tiny-llama"), "hello there", kv_cache=False, **kw)  # type: ignore[arg-type]
    assert fell_back.texts == clean.texts
    np.testing.assert_allclose(fell_back.latents[1], clean.latents[1], atol=1e-6)
    cached = branches(get_model("tiny-llama"), "hello there", kv_cache=True, **kw)  # type: ignore[arg-type]
    assert cached.texts == clean.texts  # on a correct stack, cached and uncached decoding agree


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_default_branches_are_right_on_any_stack(name: str) -> None:
    """Whatever transformers / TransformerLens pair is installed (including one whose KV cache is
    broken, e.g. transformers 5.24 + TL 4.3), default ``branches`` texts equal uncached greedy-free
    sampling with the same seed, and a broken stack is announced with a warning naming the fix."""
    import warnings

    from pe_hooks.core.errors import UpstreamWarning
    from pe_hooks.models import load_model
    from pe_hooks.models.kv_check import check_kv_cache

    model = load_model(name)
    kw = dict(n_branches=2, max_new_tokens=6, layers=[1], massive=None, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        default = branches(model, "hello there", **kw)  # type: ignore[arg-type]
    warned = any(issubclass(w.category, UpstreamWarning) for w in caught)
    assert warned == (not check_kv_cache(model).ok)
    uncached = branches(model, "hello there", kv_cache=False, **kw)  # type: ignore[arg-type]
    assert default.texts == uncached.texts
    np.testing.assert_allclose(default.latents[1], uncached.latents[1], atol=1e-6)
