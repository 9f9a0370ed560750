"""Trajectories of given texts (``pe_hooks.branching.texts``) and a reader model: grouping and file
formats, special tokens left out, the latents equal to a plain forward at the content positions,
encoders without generation, a planted positional path through a GPT-2 whose W_pos the test sets
(and takes away with ``zero``, checked against W_pos zeroed by hand), ``run_branches(texts=)``,
``run_branches(reader=)`` and ``pe-hooks branches --texts``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pe_hooks import ArgumentError, DataError, run_branches
from pe_hooks.branching import branches, read_texts, text_latents
from pe_hooks.branching.analysis import analyze
from pe_hooks.branching.grouped import grouped_path_ratio
from pe_hooks.branching.run import intervention_hooks
from pe_hooks.branching.scores import headline_scores
from pe_hooks.branching.texts import groups_of, special_ids, tokenize_trajectories
from pe_hooks.branching.views import make_views
from pe_hooks.models.load import bridge_from_hf, load_hf
from tests.conftest import get_model

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "far", "away", "from", "home", "into", "the", "old", "dark", "wood"]


def _texts(n: int, n_words: int = 12, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, n_words)) for _ in range(n)]


def test_read_texts_formats_and_groups(tmp_path: Path) -> None:
    assert read_texts(["a b", "c d"]) == {"texts": ["a b", "c d"]}
    assert read_texts([["a", "b"], ["c", "d", "e"]]) == {"group 0": ["a", "b"], "group 1": ["c", "d", "e"]}
    assert read_texts({"x": ["a", "b"], "y": ["c", "d"]}) == {"x": ["a", "b"], "y": ["c", "d"]}
    (tmp_path / "t.txt").write_text("first one\nsecond one\n\n\n  third  \nfourth\nfifth\n")
    assert read_texts(tmp_path / "t.txt") == {"group 0": ["first one", "second one"],
                                              "group 1": ["third", "fourth", "fifth"]}
    assert read_texts(str(tmp_path / "t.txt")) == read_texts(tmp_path / "t.txt")  # a path given as a string
    (tmp_path / "t.json").write_text(json.dumps({"g": ["a", "b"], "h": ["c", "d"]}))
    assert read_texts(tmp_path / "t.json") == {"g": ["a", "b"], "h": ["c", "d"]}
    # the texts.json of a sampled branches report: grouped by its prompts, in order
    (tmp_path / "b.json").write_text(json.dumps({"prompts": ["P", "Q"], "texts": ["1", "2", "3", "4", "5", "6"]}))
    assert read_texts(tmp_path / "b.json") == {"P": ["1", "2", "3"], "Q": ["4", "5", "6"]}
    # ... and of a report on given texts (groups of any size)
    (tmp_path / "g.json").write_text(json.dumps({"prompts": ["P"], "texts": ["1"], "groups": {"P": ["1", "2"],
                                                                                          "Q": ["3", "4", "5"]}}))
    assert read_texts(tmp_path / "g.json") == {"P": ["1", "2"], "Q": ["3", "4", "5"]}


def test_read_texts_errors_name_the_fix(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "bad.json").write_text("[1, 2")
    (tmp_path / "odd.json").write_text(json.dumps({"prompts": ["P", "Q"], "texts": ["1", "2", "3"]}))
    cases: list[tuple[Any, str]] = [
        (tmp_path / "empty.txt", "is empty"),
        (tmp_path / "bad.json", "not valid JSON"),
        (tmp_path / "odd.json", "do not split evenly"),
        (["only one"], "single text"),
        ({"a": ["x", "y"], "b": ["z"]}, "give every group at least two texts"),
        (["x", ""], r"texts\[1\] is not a non-empty string"),
        ([["x", "y"], "z"], "mixes texts and lists of texts"),
        ({"a": "x y"}, r"texts\['a'\] should be a list of texts"),
        ("not a file at all", "pass a file or a list of at least two texts"),
        (tmp_path / "missing.txt", "cannot read texts"),
        (5, "got int; it should hold a list of strings"),
    ]
    for value, phrase in cases:
        with pytest.raises(DataError, match=phrase):
            read_texts(value)


def test_special_tokens_are_left_out_and_latents_equal_a_plain_forward() -> None:
    """On the encoder: [CLS] at position 0 and [SEP] after the text are read but are not in the
    trajectories; each text's trajectory is its first n tokens at positions 1..n; the latents are
    exactly those of the model's own forward on ``to_tokens(text)`` (the shortest text is uncut)."""
    model = get_model("tiny-bert")
    texts = {"a": _texts(2, seed=1), "b": _texts(3, seed=2)}
    flat = texts["a"] + texts["b"]
    lat = text_latents(model, texts, layers=[0, 1], progress=False)
    specials = special_ids(model)
    tok = model.tokenizer
    assert {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id} <= specials
    n = len(lat.branch) // len(flat)
    counts = [len([t for t in model.to_tokens(x)[0].tolist() if t not in specials]) for x in flat]
    assert n == min(counts) and len(lat.branch) == n * len(flat)
    np.testing.assert_array_equal(lat.position, np.tile(np.arange(1, n + 1), len(flat)))
    np.testing.assert_array_equal(lat.branch, np.repeat(np.arange(5), n))
    np.testing.assert_array_equal(lat.prompt, np.repeat([0, 0, 1, 1, 1], n))
    assert lat.prompts == ["a", "b"] and lat.texts == flat and groups_of(lat) == texts
    assert lat.sequences is not None
    for row in lat.sequences:  # [CLS] first, [SEP] read after the kept tokens
        real = row[row != tok.pad_token_id].tolist()
        assert real[0] == tok.cls_token_id and real[-1] == tok.sep_token_id
        assert not any(t in specials for t in real[1:-1])
    assert not any(t.strip() in ("[CLS]", "[SEP]", "[PAD]") for t in lat.token)
    i = counts.index(n)  # the shortest text is read whole, exactly as the model reads it
    _, cache = model.run_with_cache(model.to_tokens(flat[i]))
    for layer in (0, 1):
        want = cache[f"blocks.{layer}.hook_resid_pre"][0, 1:n + 1].numpy()
        np.testing.assert_allclose(lat.latents[layer][lat.branch == i], want, rtol=0, atol=1e-5)


def test_lengths_are_cut_to_the_shortest_and_far_apart_lengths_are_refused() -> None:
    model = get_model("tiny-gpt2")
    short, long = "the cat sat on the mat", "the cat sat on the mat and then ran far away from home"
    with pytest.raises(DataError, match=r"pass max_tokens=\d+ \(--max-tokens\) to accept the cut"):
        tokenize_trajectories(model, [short, long])
    data, content, n = tokenize_trajectories(model, [short, long], max_tokens=10)
    assert n == 10 and content.sum(1).tolist() == [10, 10]
    # both trajectories are the same first 10 tokens of the texts, at the same positions 1..10
    assert data.tokens[0, 1:11].tolist() == data.tokens[1, 1:11].tolist()
    assert data.positions[content].tolist() == list(range(1, 11)) * 2
    with pytest.raises(DataError, match="fewer than max_tokens=40; lower max_tokens"):
        tokenize_trajectories(model, [short, long], max_tokens=40)


def test_an_encoder_reads_texts_without_generating(monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM's kind of model (BERT, tiny here): no generation, no KV cache; without texts the
    error names texts= and reader=."""
    model = get_model("tiny-bert")

    def no_generation(*a: Any, **k: Any) -> None:
        raise AssertionError("generate called")

    monkeypatch.setattr(model, "generate", no_generation)
    monkeypatch.setattr("pe_hooks.branching.generate.check_kv_cache", no_generation)
    monkeypatch.setattr("pe_hooks.branching.analysis.umap_embed", lambda x, **k: np.asarray(x)[:, :2])
    run = run_branches(model, texts={"a": _texts(3, seed=3), "b": _texts(3, seed=4)}, layers=[0, 1],
                       intervention=["zero", "remove"], fit_seqs=8, n_perm=10, progress=False)
    assert run.source == "texts" and run.layers == [0, 1] and list(run.interventions) == ["zero", "remove"]
    views = set(run.metrics["view"])
    assert {"raw", "erased (leace, reference)", "erased (branches, out-of-sample)", "intervened (zero)",
            "intervened (remove)"} <= views
    assert {"path_ratio", "path_ratio_null", "path_ratio_by_group", "path_ratio_by_group_null",
            "knn_branch_purity_null"} <= set(run.metrics["metric"])
    assert "given texts" in run.title(0) and run.settings["tokens_read"] == len(run.raw.branch) // 6
    with pytest.raises(DataError, match=r"not a causal language model.*texts=.*reader="):
        run_branches(model, progress=False)
    with pytest.raises(ArgumentError, match="not both"):
        run_branches(model, "a prompt", texts=["a b", "c d"], progress=False)


def _gpt2_with_wpe(scale: float, zeroed: bool = False) -> object:
    """The tiny GPT-2 with W_pos set by the test: a smooth random path (random walk) of norm ``scale``
    per row, or all rows zero."""
    hf, tok = load_hf("tiny-gpt2")
    wpe = hf.transformer.wpe.weight
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        walk = torch.randn(wpe.shape, generator=g).cumsum(0)
        walk = walk - walk.mean(0)
        wpe.copy_(0.0 if zeroed else scale * walk / walk.norm(dim=1).mean())
    return bridge_from_hf(hf, tok, name="tiny-gpt2-wpe")


def test_planted_positional_path_through_learned_positions() -> None:
    """A GPT-2 whose W_pos (large, smooth) dominates its first residual: the texts' trajectories
    follow one path (path ratio far below its shuffled null); read under ``zero`` the path is gone
    (the ratio sits at its null), and the zero-read latents equal those of the model with W_pos
    zeroed by hand. Measured: path ratio 0.001 raw, 0.97 under zero (null 1.00 [0.98, 1.02]); with W_pos
    rows of norm 1 instead of 20, still 0.18 raw."""
    model = _gpt2_with_wpe(scale=20.0)
    texts = {"a": _texts(4, n_words=10, seed=5), "b": _texts(4, n_words=10, seed=6)}
    raw = text_latents(model, texts, layers=[0, 1], progress=False)
    n_tok = len(raw.branch) // 8
    assert n_tok > 30
    zeroed = text_latents(model, texts, layers=[0, 1], max_tokens=n_tok, progress=False,
                          hooks=intervention_hooks(model, "zero", n_tok + 1))
    by_hand = text_latents(_gpt2_with_wpe(0.0, zeroed=True), texts, layers=[0, 1], max_tokens=n_tok, progress=False)
    for layer in (0, 1):
        np.testing.assert_allclose(zeroed.latents[layer], by_hand.latents[layer], rtol=0, atol=1e-4)
    x, b, t = raw.view(0)
    s = headline_scores(x, b, t, n_perm=50)
    assert s["path_ratio"] < 0.2 < s["path_ratio_null_lo"] and abs(s["path_ratio_null"] - 1) < 0.05
    g = grouped_path_ratio(x, b, t, raw.prompt[raw.keep(0)], n_perm=50)
    assert g["path_ratio_by_group"] < 0.2 < g["path_ratio_by_group_null_lo"]
    xz, bz, tz = zeroed.view(0)
    z = headline_scores(xz, bz, tz, n_perm=50)
    assert abs(z["path_ratio"] - z["path_ratio_null"]) < 0.1 and z["path_ratio"] > 0.8
    # the same through the views and scores of the pipeline: raw reads "same path", zero does not
    rows = analyze(make_views(raw, 0, intervened=zeroed, intervened_name="intervened (zero)"), embed=False,
                   n_perm=20, progress=False).rows
    m = {(r["view"], r["metric"]): r["value"] for r in rows}
    assert m[("raw", "path_ratio")] < 0.2 and m[("intervened (zero)", "path_ratio")] > 0.8


def test_a_reader_reads_what_another_model_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generate with the tiny GPT-2, read with the tiny BERT: the reader's raw latents are exactly
    those of the decoded continuations re-tokenised and read by the reader."""
    monkeypatch.setattr("pe_hooks.branching.analysis.umap_embed", lambda x, **k: np.asarray(x)[:, :2])
    gen, reader = get_model("tiny-gpt2"), get_model("tiny-bert")
    kw: dict[str, Any] = dict(n_branches=3, max_new_tokens=12, seed=4, kv_cache=False, progress=False)
    run = run_branches(gen, ["the cat", "a dog ran"], reader=reader, layers=[1], intervention="zero", fit_seqs=8,
                       n_perm=10, **kw)
    sampled = branches(gen, ["the cat", "a dog ran"], layers=[0], **kw)
    assert run.source == "reader" and run.generated is not None and run.generated.texts == sampled.texts
    assert groups_of(run.raw) == groups_of(sampled) and run.raw.texts == sampled.texts
    want = text_latents(reader, groups_of(sampled), layers=[1], max_tokens=int(run.settings["tokens_read"]),
                        progress=False)
    np.testing.assert_array_equal(run.raw.latents[1], want.latents[1])
    assert "reading" in run.title(1) and run.raw.sequences is not None
    assert int(run.raw.sequences[0, 0]) == reader.tokenizer.cls_token_id  # the reader's tokens, not the generator's
    assert set(run.interventions) == {"zero"}


@pytest.mark.slow  # UMAP (numba JIT on first use): ~1 min on 2 shared cores
def test_cli_texts_end_to_end(tmp_path: Path) -> None:
    from pe_hooks.cli.main import main

    (tmp_path / "t.txt").write_text("\n".join(_texts(3, seed=7)) + "\n\n" + "\n".join(_texts(3, seed=8)) + "\n")
    code = main(["branches", "--model", "tiny-bert", "--texts", str(tmp_path / "t.txt"), "--layer", "0",
                 "--intervention", "zero", "--intervention", "remove", "--fit-seqs", "8", "--n-perm", "10",
                 "--out", str(tmp_path)])
    assert code == 0
    out = tmp_path / "branches-tiny-bert"
    assert (out / "branches-layer0.png").stat().st_size > 10_000
    saved = json.loads((out / "texts.json").read_text())
    assert saved["source"] == "texts" and list(saved["groups"]) == ["group 0", "group 1"]
    assert read_texts(out / "texts.json") == read_texts(tmp_path / "t.txt")  # the report reads back as texts
    md = (out / "metrics.md").read_text()
    assert "Trajectories of given texts" in md and "path ratio by group" in md and "## Texts read" not in md
    assert "intervened (remove)" in md and "## Texts read" in (out / "branches.md").read_text()


def _readme_command(start: str) -> list[str]:
    """The README's command line that starts with ``start`` (a ```bash block), split like a shell."""
    import shlex

    text = (Path(__file__).parents[1] / "README.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"the README should show one command starting {start!r}"
    return shlex.split(lines[0])


def test_gpt2_recipe_runs_as_written_on_the_gpt2_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's recipe for GPT-2 small (hub), run as written with ``gpt2`` bound to the random-init
    GPT-2 architecture (``tiny-gpt2``), kept lean (16 tokens per text, 10 permutations, 8 fit sequences)."""
    from pe_hooks.cli.main import main

    argv = _readme_command("pe-hooks branches --model gpt2 ")
    assert "--texts" in argv and argv.count("--intervention") >= 2
    out = argv.index("--out")
    argv[out + 1] = str(tmp_path)
    monkeypatch.setattr("pe_hooks.load_model", lambda name, **kw: get_model("tiny-gpt2" if name == "gpt2" else name))
    monkeypatch.setattr("pe_hooks.branching.analysis.umap_embed", lambda x, **k: np.asarray(x)[:, :2])
    monkeypatch.chdir(Path(__file__).parents[1])
    assert main(argv[1:] + ["--n-perm", "10", "--fit-seqs", "8", "--max-tokens", "16"]) == 0  # lean: 32 x 16 tokens
    folder = tmp_path / "branches-gpt2"
    saved = json.loads((folder / "texts.json").read_text())
    assert saved["source"] == "texts" and len(saved["groups"]) == 4
    df = __import__("pandas").read_csv(folder / "metrics.csv")
    assert {"intervened (zero)", "intervened (remove)", "erased (leace, reference)",
            "erased (branches, out-of-sample)"} <= set(df["view"])


def test_cli_reader_writes_beside_the_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--reader``: sampled by --model, read by the reader; the folder names both."""
    from pe_hooks.cli.main import main

    monkeypatch.setattr("pe_hooks.load_model", lambda name, **kw: get_model(name))
    monkeypatch.setattr("pe_hooks.branching.analysis.umap_embed", lambda x, **k: np.asarray(x)[:, :2])
    code = main(["branches", "--model", "tiny-gpt2", "--reader", "tiny-bert", "--prompt", "the cat", "--prompt", "a dog",
                 "--branches", "2", "--tokens", "10", "--layer", "0", "--intervention", "zero", "--kv-cache", "off",
                 "--fit-seqs", "8", "--n-perm", "10", "--out", str(tmp_path)])
    assert code == 0
    saved = json.loads((tmp_path / "branches-tiny-bert-reading-tiny-gpt2" / "texts.json").read_text())
    assert saved["source"] == "reader" and saved["generator"] == "tiny-gpt2" and list(saved["groups"]) == ["the cat", "a dog"]
    md = (tmp_path / "branches-tiny-bert-reading-tiny-gpt2" / "metrics.md").read_text()
    assert md.startswith("# Branches of tiny-gpt2, read by tiny-bert")


def test_final_layer_is_the_final_residual_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """``"final"`` (``--layer final``) = the last block's ``resid_post``, at any site: against the
    model's own forward, and the whole run equal to ``site="resid_post", layers=[n-1]`` (the reference
    eraser fitted at the same hook), reported as layer ``n_layers``."""
    model = get_model("tiny-bert")
    texts = {"a": _texts(3, seed=5), "b": _texts(3, seed=6)}
    flat = texts["a"] + texts["b"]
    n = 2  # tiny-bert's layers
    lat = text_latents(model, texts, layers=["final", 0], progress=False)
    assert sorted(lat.latents) == [0, n]
    mid = text_latents(model, texts, layers=["final"], site="resid_mid", progress=False)
    post = text_latents(model, texts, layers=[n - 1], site="resid_post", progress=False)
    np.testing.assert_array_equal(mid.latents[n], lat.latents[n])
    np.testing.assert_array_equal(post.latents[n - 1], lat.latents[n])
    np.testing.assert_array_equal(text_latents(model, texts, layers=[n], progress=False).latents[n], lat.latents[n])
    k = len(lat.branch) // len(flat)
    whole = [i for i, x in enumerate(flat) if model.to_tokens(x).shape[1] == k + 2]  # read uncut: [CLS] x [SEP]
    assert whole
    for i in whole:  # the model's own forward on the text alone
        _, cache = model.run_with_cache(model.to_tokens(flat[i]))
        want = cache[f"blocks.{n - 1}.hook_resid_post"][0, 1:k + 1].numpy()
        np.testing.assert_allclose(lat.latents[n][lat.branch == i], want, rtol=0, atol=1e-5)
    assert not np.allclose(lat.latents[n], text_latents(model, texts, layers=[-1], progress=False).latents[n - 1])
    auto = text_latents(model, texts, layers=["auto", "final"], progress=False)
    assert auto.layer_scores is not None and sorted(auto.layer_scores["layer"]) == [0, 1]  # auto scores the blocks
    assert n in auto.latents and set(auto.auto_layers) <= {0, 1}

    monkeypatch.setattr("pe_hooks.branching.analysis.umap_embed", lambda x, **k: np.asarray(x)[:, :2])
    kw: dict[str, Any] = dict(texts=texts, intervention="zero", fit_seqs=8, n_perm=10, progress=False)
    run = run_branches(model, layers=["final"], **kw)
    ref = run_branches(model, layers=[n - 1], site="resid_post", **kw)
    assert run.layers == [n] and "final residual" in run.title(n) and "final" not in ref.title(n - 1)
    got, want = run.metrics, ref.metrics.assign(layer=n)
    assert {"erased (leace, reference)", "intervened (zero)"} <= set(got["view"])
    __import__("pandas").testing.assert_frame_equal(got, want)
    with pytest.raises(ArgumentError, match="name a layer twice"):
        run_branches(model, layers=["final", n], **kw)


def test_cli_layer_final(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--layer final`` is listed in --help, writes layer ``n_layers``; a bad name is one line naming it."""
    from pe_hooks.cli.main import main

    monkeypatch.setattr("pe_hooks.branching.analysis.umap_embed", lambda x, **k: np.asarray(x)[:, :2])

    assert main(["branches", "--help"]) == 0
    assert "'final' (the final residual stream" in " ".join(capsys.readouterr().out.split())
    (tmp_path / "t.txt").write_text("\n".join(_texts(3, seed=9)) + "\n")
    assert main(["branches", "--model", "tiny-bert", "--texts", str(tmp_path / "t.txt"), "--layer", "final",
                 "--intervention", "zero", "--fit-seqs", "8", "--n-perm", "10", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "branches-tiny-bert" / "branches-layer2.png").exists()
    capsys.readouterr()
    assert main(["branches", "--model", "tiny-bert", "--layer", "last", "--out", str(tmp_path / "x")]) == 2
    assert "a layer is an integer, 'auto' or 'final', not 'last'" in capsys.readouterr().err
