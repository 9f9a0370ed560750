"""Bad input and faults (issue 14): no silent wrong result, no half-written artefact that looks
complete, no traceback from inside a dependency.

Table-driven: each case is a callable, the ``PeHooksError`` subclass it must raise and a phrase of
the fix its message must contain; cases whose right answer is a result assert the exact result.
Tiny models only; the whole file runs in well under two minutes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import pe_hooks as p
from pe_hooks.core.atomic import MARKER, read_artefact, write_artefact
from pe_hooks.core.errors import (
    ArgumentError,
    ArtefactError,
    DataError,
    HookListError,
    HookPointError,
    ModelLoadError,
    ModelMismatchError,
    PeHooksError,
    RangeError,
    SchemeError,
)
from pe_hooks.data import load_data, stream_activations
from tests.conftest import get_model, hook_counts

IDS = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12]])
NAN = float("nan")

_other: dict[str, Any] = {}


def gpt2() -> Any:
    return get_model("tiny-gpt2")


def llama() -> Any:
    return get_model("tiny-llama")


def bloom() -> Any:
    return get_model("tiny-bloom")


def gpt2_b() -> Any:
    """Same architecture as tiny-gpt2, other weights (seed 1)."""
    if "gpt2_b" not in _other:
        _other["gpt2_b"] = p.load_model("tiny-gpt2", seed=1)
    return _other["gpt2_b"]


def run(model: Any, hooks: Any, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model.run_with_hooks(ids, fwd_hooks=hooks)  # type: ignore[no-any-return]


@contextmanager
def env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


_fitted: dict[str, Any] = {}


def small_eraser() -> Any:
    """A LEACE eraser on tiny-gpt2, layer 0, 8 sequences of 16 tokens (fitted once)."""
    if "e" not in _fitted:
        _fitted["e"] = p.fit_eraser(gpt2(), None, layers=[0], seq_len=16, n_seqs=8, progress=False)
    return _fitted["e"]


def saved_eraser(tmp: Path) -> Path:
    return small_eraser().save(tmp / "eraser")  # type: ignore[no-any-return]


def small_sweep(**kw: Any) -> Any:
    opts: dict[str, Any] = dict(layers=[0], seq_len=16, n_seqs=8, n_bins=4, folds=2, token_floor=False, progress=False)
    opts.update(kw)
    return p.sweep(gpt2(), None, ["baseline"], **opts)


def cache_is_a_file(tmp: Path) -> Any:
    from pe_hooks.models.cache import cache_root

    f = tmp / "cache-file"
    f.write_text("x")
    with env("PE_HOOKS_CACHE", str(f)):
        return cache_root()


def corrupt(tmp: Path, how: str) -> Any:
    folder = saved_eraser(tmp)
    if how == "truncated":
        t = folder / "eraser.safetensors"
        t.write_bytes(t.read_bytes()[:50])
    elif how == "empty-json":
        (folder / "eraser.json").write_text("")
    elif how == "no-marker":
        (folder / MARKER).unlink()
    elif how == "missing-tensors":
        (folder / "eraser.safetensors").unlink()
    elif how == "version":
        m = json.loads((folder / MARKER).read_text())
        m["format_version"] = 99
        (folder / MARKER).write_text(json.dumps(m))
    elif how == "bad-marker":
        (folder / MARKER).write_text("{not json")
    return p.PositionEraser.load(folder)


def save_to_file(tmp: Path) -> Any:
    f = tmp / "a-file"
    f.write_text("x")
    return small_eraser().save(f)


def load_from_file(tmp: Path) -> Any:
    f = tmp / "a-file"
    f.write_text("x")
    return p.PositionEraser.load(f)


def save_into_foreign_folder(tmp: Path) -> Any:
    d = tmp / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("my notes")
    return small_eraser().save(d)


def sweep_load_without_marker(tmp: Path) -> Any:
    (tmp / "sweep.json").write_text(json.dumps({"meta": {}, "rows": []}))
    return p.SweepResult.load(tmp)


def cli(*argv: str) -> Callable[[Path], Any]:
    def call(tmp: Path) -> Any:
        from pe_hooks.cli.main import main

        args = [a.replace("{tmp}", str(tmp)) for a in argv]
        if "{file}" in " ".join(argv):
            (tmp / "file").write_text("x")
            args = [a.replace("{file}", str(tmp / "file")) for a in args]
        return main(args)

    return call


# (id, callable(tmp_path), expected error class, phrase of the fix)
CASES: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    # ---- models (issue item 7)
    ("load_model empty name", lambda t: p.load_model(""), ModelLoadError, "needs a model name"),
    ("load_model blank name", lambda t: p.load_model("   "), ModelLoadError, "needs a model name"),
    ("load_model not a str", lambda t: p.load_model(5), ModelLoadError, "expects a model name"),
    ("device banana", lambda t: p.load_model("tiny-gpt2", device="banana"), ModelLoadError, "use 'cpu'"),
    ("device cuda without CUDA", lambda t: p.load_model("tiny-gpt2", device="cuda"), ModelLoadError,
     "CUDA is not available"),
    ("dtype not float", lambda t: p.load_model("tiny-gpt2", dtype=torch.int64), ModelLoadError, "torch.float32"),
    ("PE_HOOKS_CACHE is a file", cache_is_a_file, ModelLoadError, "set PE_HOOKS_CACHE to a folder"),
    ("verb on a model name", lambda t: p.zero("tiny-gpt2"), ArgumentError, "pe_hooks.load_model(name)"),
    ("inspect on None", lambda t: p.inspect(None), ArgumentError, "load_model"),
    # ---- layers / heads / bands (items 10, 11)
    ("layers=[]", lambda t: p.zero(llama(), layers=[]), ArgumentError, "pass None (all)"),
    ("layer 1.5", lambda t: p.zero(llama(), layers=[1.5]), ArgumentError, "must be integers"),
    ("layer '0'", lambda t: p.zero(llama(), layers=["0"]), ArgumentError, "must be integers"),
    ("layer True", lambda t: p.zero(llama(), layers=True), ArgumentError, "must be integers"),
    ("duplicate layers", lambda t: p.zero(llama(), layers=[0, 0]), ArgumentError, "give each index once"),
    ("layer out of range", lambda t: p.zero(llama(), layers=[9]), RangeError, "has layers 0..1"),
    ("heads=[]", lambda t: p.zero(bloom(), heads=[]), ArgumentError, "pass None (all)"),
    ("head out of range", lambda t: p.zero(bloom(), heads=[99]), RangeError, "heads 0.."),
    ("head 0.5", lambda t: p.zero(bloom(), heads=[0.5]), ArgumentError, "must be integers"),
    ("bands=[]", lambda t: p.zero(llama(), bands=[]), SchemeError, "at least one"),
    ("keep_bands=[]", lambda t: p.replace(llama(), p.shift(1), keep_bands=[]), SchemeError, "at least one"),
    ("float bands", lambda t: p.zero(llama(), bands=[0.5]), SchemeError, "integer band indices"),
    ("frequency_bands middle", lambda t: p.frequency_bands(llama(), "middle"), SchemeError, "'low' or 'high'"),
    ("frequency_bands n=0", lambda t: p.frequency_bands(llama(), "low", 0), ArgumentError, "n must be"),
    ("project_out k=-1", lambda t: p.project_out(gpt2(), k=-1), ArgumentError, "k counts the directions"),
    ("project_out k=0", lambda t: p.project_out(gpt2(), k=0), ArgumentError, "k counts the directions"),
    ("project_out k too large", lambda t: p.project_out(gpt2(), torch.randn(3, 64), site="resid_pre", k=4),
     ArgumentError, "k must be 1..3"),
    ("project_out k=1.5", lambda t: p.project_out(gpt2(), k=1.5), ArgumentError, "must be an integer"),
    ("project_out NaN basis", lambda t: p.project_out(gpt2(), torch.full((2, 64), NAN), site="resid_pre"),
     SchemeError, "finite directions"),
    ("HookList + 5", lambda t: p.zero(gpt2()) + 5, HookListError, "(hook_name, fn) pairs"),
    ("unknown site", lambda t: p.zero(gpt2(), site="banana"), SchemeError, "known sites"),
    # ---- positions (item 8)
    ("NaN positions, learned", lambda t: run(gpt2(), p.replace(gpt2(), lambda x: x * NAN)), SchemeError,
     "finite positions"),
    ("NaN positions, rotary", lambda t: run(llama(), p.replace(llama(), lambda x: x * NAN)), SchemeError,
     "finite positions"),
    ("inf positions, ALiBi", lambda t: run(bloom(), p.replace(bloom(), lambda x: x + float("inf"))), SchemeError,
     "finite positions"),
    ("bool positions", lambda t: run(gpt2(), p.replace(gpt2(), lambda x: x > 0)), SchemeError, "real positions"),
    ("complex positions", lambda t: run(llama(), p.replace(llama(), lambda x: x.to(torch.complex64))), SchemeError,
     "real positions"),
    ("bool table", lambda t: p.table(torch.tensor([True, False])), SchemeError, "real positions"),
    ("NaN table", lambda t: p.table(torch.tensor([0.0, NAN])), SchemeError, "finite"),
    ("huge positions on W_pos", lambda t: run(gpt2(), p.replace(gpt2(), p.shift(10**6))), SchemeError,
     "stays inside the context"),
    ("shift(1.5)", lambda t: p.shift(1.5), ArgumentError, "must be an integer"),
    ("scale(0)", lambda t: p.scale(0), ArgumentError, "must be > 0"),
    ("scale(nan)", lambda t: p.scale(NAN), ArgumentError, "finite number"),
    ("reverse(0)", lambda t: p.reverse(0), ArgumentError, "must be >= 1"),
    ("constant(-1)", lambda t: p.constant(-1), ArgumentError, "must be >= 0"),
    ("remove reference 1.5", lambda t: p.remove(llama(), reference=[0, 1.5]), ArgumentError, "must be integers"),
    ("remove reference -1", lambda t: p.remove(gpt2(), reference=[-1]), RangeError, "does not exist"),
    ("positions=True", lambda t: p.replace(gpt2(), True), SchemeError, "PositionMap"),
    # ---- sequences longer than the context under a verb (item 9)
    ("too long under zero (learned)", lambda t: run(gpt2(), p.zero(gpt2()), torch.ones(1, 300, dtype=torch.long)),
     DataError, "shorten the sequence"),
    ("too long under replace (learned)",
     lambda t: run(gpt2(), p.replace(gpt2(), p.shift(0)), torch.ones(1, 300, dtype=torch.long)),
     DataError, "shorten the sequence"),
    # ---- hooks bound to their model (item 1) and erasers to theirs (item 2)
    ("replace(a) run on b", lambda t: run(gpt2_b(), p.replace(gpt2(), p.shift(3))), ModelMismatchError,
     "Build the hooks from the model you run"),
    ("remove(a) run on b", lambda t: run(gpt2_b(), p.remove(gpt2())), ModelMismatchError,
     "Build the hooks from the model you run"),
    ("zero(llama) applied to gpt2", lambda t: p.zero(llama()).applied(gpt2()).__enter__(), HookPointError,
     "pe_hooks.inspect(model)"),
    ("eraser loaded without model, run on llama",
     lambda t: p.PositionEraser.load(saved_eraser(t)).hooks(llama()), ModelMismatchError, "fit or build it again"),
    ("eraser loaded without model, run on other weights",
     lambda t: p.PositionEraser.load(saved_eraser(t)).hooks(gpt2_b()), ModelMismatchError, "other weights"),
    ("eraser loaded for other weights", lambda t: p.PositionEraser.load(saved_eraser(t), model=gpt2_b()),
     ModelMismatchError, "fit or build it again"),
    ("eraser applied to other weights", lambda t: small_eraser().hooks(gpt2_b()), ModelMismatchError, "other weights"),
    # ---- artefacts (item 3, 11)
    ("load eraser: missing folder", lambda t: p.PositionEraser.load(t / "nothing"), ArtefactError, "eraser.save(path)"),
    ("load eraser: a file", load_from_file, ArtefactError, "pass the folder"),
    ("load eraser: no marker (interrupted)", lambda t: corrupt(t, "no-marker"), ArtefactError, "interrupted save"),
    ("load eraser: truncated tensors", lambda t: corrupt(t, "truncated"), ArtefactError, "bytes"),
    ("load eraser: empty json", lambda t: corrupt(t, "empty-json"), ArtefactError, "eraser.save(path)"),
    ("load eraser: tensors missing", lambda t: corrupt(t, "missing-tensors"), ArtefactError, "missing"),
    ("load eraser: other version", lambda t: corrupt(t, "version"), ArtefactError, "format version 99"),
    ("load eraser: corrupt marker", lambda t: corrupt(t, "bad-marker"), ArtefactError, "marker is corrupt"),
    ("save eraser onto a file", save_to_file, ArtefactError, "pass a folder path"),
    ("save eraser into a folder of other files", save_into_foreign_folder, ArtefactError, "new or empty folder"),
    ("load sweep without marker", sweep_load_without_marker, ArtefactError, "result.save(folder)"),
    ("load sweep: missing", lambda t: p.SweepResult.load(t / "none"), ArtefactError, "does not exist"),
    # ---- data (items 6, 11)
    ("float token tensor", lambda t: load_data(gpt2(), torch.rand(2, 8)), DataError, "convert with .long()"),
    ("token id >= vocab", lambda t: load_data(gpt2(), torch.full((2, 8), 10**6)), RangeError, "vocabulary"),
    ("negative token id", lambda t: load_data(gpt2(), torch.full((2, 8), -1)), RangeError, "start at 0"),
    ("token rows too long", lambda t: load_data(gpt2(), torch.ones(2, 300, dtype=torch.long)), DataError,
     "seq_len <= 256"),
    ("token lists not ints", lambda t: load_data(gpt2(), [[1.5, 2.0], [3.0, 4.0]]), DataError, "list of strings"),
    ("ragged token lists", lambda t: load_data(gpt2(), [[1, 2, 3], [4, 5]]), DataError, "equal length"),
    ("data is a folder", lambda t: load_data(gpt2(), str(t)), DataError, "pass a UTF-8 text file"),
    ("branches prompt int", lambda t: p.branches(gpt2(), 5), DataError, "list of strings"),
    ("list of non-strings", lambda t: load_data(gpt2(), ["a text", 5]), DataError, "pass strings"),
    ("tensor shorter than n_seqs", lambda t: load_data(gpt2(), torch.ones(3, 8, dtype=torch.long), n_seqs=5),
     DataError, "lower n_seqs"),
    ("load_data seq_len=1.5", lambda t: load_data(gpt2(), None, seq_len=1.5), ArgumentError, "integer"),
    ("stream batch_size=0",
     lambda t: next(stream_activations(gpt2(), load_data(gpt2(), None, seq_len=8, n_seqs=2), ["blocks.0.hook_resid_pre"],
                                       batch_size=0, progress=False)), ArgumentError, "batch_size must be >= 1"),
    # ---- degenerate settings: an error before any forward, never a NaN table (items 5, 10)
    ("fit_eraser seq_len=2", lambda t: p.fit_eraser(gpt2(), None, seq_len=2, progress=False), DataError, "seq_len >= 3"),
    ("fit_eraser n_seqs=0", lambda t: p.fit_eraser(gpt2(), None, n_seqs=0, progress=False), ArgumentError, "n_seqs"),
    ("fit_eraser layers=[]", lambda t: p.fit_eraser(gpt2(), None, layers=[], progress=False), ArgumentError,
     "pass None (all)"),
    ("sweep n_seqs=0", lambda t: small_sweep(n_seqs=0), ArgumentError, "n_seqs must be >= 1"),
    ("sweep n_seqs < folds", lambda t: small_sweep(n_seqs=2, folds=4), ArgumentError, "fewer folds"),
    ("sweep n_bins=1", lambda t: small_sweep(n_bins=1), ArgumentError, "at least 2 position bins"),
    ("sweep n_bins > positions", lambda t: small_sweep(n_bins=40), ArgumentError, "n_bins <= 15"),
    ("sweep folds=1", lambda t: small_sweep(folds=1), ArgumentError, "held-out folds"),
    ("sweep batch_size=0", lambda t: small_sweep(batch_size=0), ArgumentError, "batch_size must be >= 1"),
    ("sweep seq_len=2", lambda t: small_sweep(seq_len=2), ArgumentError, "seq_len must be >= 3"),
    ("sweep duplicate layers", lambda t: small_sweep(layers=[0, 0]), ArgumentError, "give each index once"),
    ("sweep layer 1.5", lambda t: small_sweep(layers=[1.5]), ArgumentError, "must be integers"),
    ("sweep tensor data too short",
     lambda t: p.sweep(gpt2(), torch.ones(4, 16, dtype=torch.long), ["baseline"], n_seqs=8, folds=2, n_bins=4,
                       progress=False), DataError, "lower n_seqs"),
]


@pytest.mark.parametrize(("call", "error", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call: Callable[[Path], Any], error: type[Exception], fix: str,
                                        tmp_path: Path) -> None:
    if error is ModelLoadError and "CUDA" in fix and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(error) as info:
        call(tmp_path)
    assert isinstance(info.value, PeHooksError)
    assert fix in str(info.value), str(info.value)


# ---- CLI (item 5, 11): one line on stderr, exit code 2, no traceback
CLI_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("sweep too few sequences", cli("sweep", "--model", "tiny-gpt2", "--n-seqs", "2", "--seq-len", "16", "--out", "{tmp}"),
     "fewer folds"),
    ("--layers 9", cli("sweep", "--model", "tiny-gpt2", "--layers", "9", "--out", "{tmp}"), "layers 0..2"),
    ("--layers a:b", cli("sweep", "--model", "tiny-gpt2", "--layers", "a:b"), "start:stop"),
    ("--batch-size 0", cli("sweep", "--model", "tiny-gpt2", "--batch-size", "0"), "must be >= 1"),
    ("--bins 0", cli("sweep", "--model", "tiny-gpt2", "--bins", "0"), "must be >= 2"),
    ("--text missing", cli("sweep", "--model", "tiny-gpt2", "--text", "{tmp}/nope.txt"), "does not exist"),
    ("--out a file", cli("sweep", "--model", "tiny-gpt2", "--out", "{file}"), "is a file"),
    ("unknown model", cli("inspect", ""), "needs a model name"),
    ("--device banana", cli("inspect", "tiny-gpt2", "--device", "banana"), "not a torch device"),
    ("branches --tokens 0", cli("branches", "--model", "tiny-gpt2", "--tokens", "0"), "must be >= 1"),
    ("branches --out a file", cli("branches", "--model", "tiny-gpt2", "--out", "{file}"), "is a file"),
    ("bench --cases bogus", cli("bench", "--quick", "--cases", "bogus", "--out", "{tmp}/b"), "unknown --cases"),
]


@pytest.mark.parametrize(("call", "fix"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_and_exit_code_2(call: Callable[[Path], Any], fix: str, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    assert call(tmp_path) == 2
    err = capfd.readouterr().err.strip()
    assert "Traceback" not in err
    assert fix in err, err
    assert len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("sweep-*")) and not (tmp_path / "b").exists(), "nothing may be written"


# ---- cases whose answer is a result
def test_token_id_lists_are_token_ids_not_text() -> None:
    rows = [[5, 6, 7, 8, 9, 10, 11, 12]] * 4
    td = load_data(gpt2(), rows)
    assert torch.equal(td.tokens, torch.tensor(rows))
    assert torch.equal(td.positions[0], torch.arange(8))
    assert torch.equal(load_data(gpt2(), [torch.tensor(r) for r in rows]).tokens, td.tokens)


def test_project_out_k_is_exact() -> None:
    model = gpt2()
    basis = torch.linalg.qr(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)))[0].T
    assert p.project_out(model, basis, site="resid_pre", k=2).basis.shape[0] == 2  # type: ignore[union-attr]
    assert p.project_out(model, k=3).basis.shape[0] == 3  # type: ignore[union-attr]


def test_negative_layers_count_from_the_end() -> None:
    assert p.zero(llama(), layers=[-1]).names == p.zero(llama(), layers=[1]).names


def test_hooks_run_on_their_own_model_unchanged() -> None:
    """Binding hooks to their model changes nothing numerically."""
    a = gpt2()
    h = p.replace(a, p.shift(3))
    want = run(a, [(n, getattr(fn, "__wrapped__", fn)) for n, fn in h])
    assert torch.equal(run(a, h), want)
    assert not torch.equal(run(a, h), run(a, []))


def test_stream_activations_leaves_the_model_clean_between_batches() -> None:
    """Item 4: with the generator alive after next(), a plain forward is un-intervened."""
    model = gpt2()
    td = load_data(model, None, seq_len=16, n_seqs=4)
    before = hook_counts(model)
    with torch.no_grad():
        clean = model(IDS)
        gen = stream_activations(model, td, ["blocks.0.hook_resid_pre"], batch_size=2, hooks=p.zero(model),
                                 progress=False)
        next(gen)
        assert hook_counts(model) == before
        assert torch.equal(model(IDS), clean)
        rest = list(gen)
    assert len(rest) == 1
    del gen


def test_interrupted_eraser_save_keeps_the_previous_eraser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 3: a save that dies half-way leaves the earlier eraser whole, and no stray folder."""
    from pe_hooks.erasers import eraser as eraser_module

    folder = tmp_path / "e"
    small_eraser().save(folder)
    pca = p.fit_eraser(gpt2(), None, method="pca", k=2, layers=[0], seq_len=16, n_seqs=8, progress=False)

    def dies(*a: Any, **k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(eraser_module, "save_file", dies)
    with pytest.raises(KeyboardInterrupt):
        pca.save(folder)
    back = p.PositionEraser.load(folder)
    assert back.method == "leace"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["e"]
    monkeypatch.undo()
    pca.save(folder)
    assert p.PositionEraser.load(folder).method == "pca"


def test_eraser_round_trip_checks_the_fingerprint(tmp_path: Path) -> None:
    e = small_eraser()
    back = p.PositionEraser.load(e.save(tmp_path / "e"), model=gpt2())
    assert back.info.fingerprint == e.info.fingerprint and back.info.fingerprint["d_model"] == 64
    x = torch.randn(3, 64)
    # the tensors are bit-identical; a freshly fitted map may be a non-contiguous view, so the
    # matmul kernel (not the data) can differ in the last float bit
    assert all(torch.equal(getattr(back.maps[n], a), getattr(e.maps[n], a)) for n in e.maps for a in ("mean", "left", "right"))
    assert torch.allclose(back.transform(x, layer=0), e.transform(x, layer=0), atol=1e-6)
    assert torch.allclose(run(gpt2(), back.hooks(gpt2())), run(gpt2(), e.hooks(gpt2())), atol=1e-5)


def test_interrupted_sweep_save_never_mixes_runs(tmp_path: Path) -> None:
    """Item 3: no stale PNG beside new CSVs; an interrupted save leaves the earlier result whole."""
    res = small_sweep()
    folder = tmp_path / "sweep-x"
    res.save(folder, extra=lambda d: (d / "sweep.png").write_bytes(b"old png"))
    old_csv = (folder / "sweep.csv").read_text()

    def dies(d: Path) -> None:
        (d / "sweep.md").write_text("half")
        raise KeyboardInterrupt

    res2 = p.SweepResult(res.df.assign(value=res.df.value + 1), res.meta)
    with pytest.raises(KeyboardInterrupt):
        res2.save(folder, extra=dies)
    assert (folder / "sweep.csv").read_text() == old_csv and (folder / "sweep.png").read_bytes() == b"old png"
    assert not (folder / "sweep.md").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["sweep-x"]
    res2.save(folder)
    assert not (folder / "sweep.png").exists(), "a new save replaces the folder whole"
    back = p.SweepResult.load(folder)
    pd.testing.assert_frame_equal(back.df, res2.df, check_dtype=False)


def test_cli_sweep_output_folder_is_complete(tmp_path: Path) -> None:
    from pe_hooks.cli.main import main

    assert main(["sweep", "--model", "tiny-gpt2", "--n-seqs", "4", "--seq-len", "12", "--bins", "4", "--folds", "2",
                 "--layers", "0", "--interventions", "baseline", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "sweep-tiny-gpt2"
    assert {f.name for f in folder.iterdir()} == {"sweep.csv", "sweep.json", "sweep.md", "sweep.png", MARKER}
    marker = read_artefact(folder, "sweep result", 1, fix="")
    assert set(marker["files"]) == {"sweep.csv", "sweep.json", "sweep.md", "sweep.png"}
    assert not p.SweepResult.load(folder).df.value.isna().all()


def test_write_artefact_replaces_only_its_own_kind(tmp_path: Path) -> None:
    target = tmp_path / "a"
    with write_artefact(target, "thing", 1) as d:
        (d / "x.txt").write_text("1")
    with write_artefact(target, "thing", 1) as d:
        (d / "y.txt").write_text("2")
    assert sorted(f.name for f in target.iterdir()) == [MARKER, "y.txt"]
    with pytest.raises(ArtefactError, match="not a other"):
        read_artefact(target, "other", 1, fix="")


# ---- the guarantees that already held (keep holding)
def test_hooks_detach_on_exception_interrupt_and_bad_name() -> None:
    model = gpt2()
    before = hook_counts(model)
    with pytest.raises(ValueError), p.zero(model).applied(model):
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), p.zero(model).applied(model):
        raise KeyboardInterrupt
    bad = p.zero(model) + p.HookList([("blocks.9.nothing", lambda t, hook: t)])
    with pytest.raises(HookPointError, match="pe_hooks.inspect"), bad.applied(model):
        pass
    assert hook_counts(model) == before


def test_user_hooks_survive_pe_hooks_contexts() -> None:
    model = gpt2()
    calls: list[int] = []
    model.add_hook("blocks.0.hook_resid_pre", lambda t, hook: calls.append(1))
    try:
        with torch.no_grad():
            with p.zero(model).applied(model):
                model(IDS)
            with pytest.raises(RuntimeError), p.zero(model).applied(model):
                raise RuntimeError
            model(IDS)
        assert len(calls) == 2
    finally:
        model.reset_hooks()


def test_reruns_are_bit_identical() -> None:
    model = llama()
    assert torch.equal(run(model, p.replace(model, p.shift(3))), run(model, p.replace(model, p.shift(3))))
    a = p.fit_eraser(gpt2(), None, layers=[0], seq_len=16, n_seqs=8, progress=False)
    b = p.fit_eraser(gpt2(), None, layers=[0], seq_len=16, n_seqs=8, progress=False)
    x = torch.randn(5, 64)
    assert torch.equal(a.transform(x, layer=0), b.transform(x, layer=0))
    pd.testing.assert_frame_equal(small_sweep().df, small_sweep().df)
