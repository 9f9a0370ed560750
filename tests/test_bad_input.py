"""Bad input and faults (issue 14): no silent wrong result, no half-written artefact that looks
complete, no traceback from inside a dependency.

Table-driven: every case of ``tests/bad_input_cases.py`` (the table ``benchmarks/bad_input_audit.py``
classifies too) is one test: the call, and either the ``PeHooksError`` subclass it must raise with a
phrase of the fix its message must contain, the warning it must give (with a phrase of the fix), the
one-line CLI error, or the exact right result.
Tiny models only; the whole file runs in well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import pe_hooks as p
from pe_hooks.core.atomic import MARKER, read_artefact, write_artefact
from pe_hooks.core.errors import ArtefactError, ModelLoadError, PeHooksError
from tests.bad_input_cases import (
    CASES,
    ITEMS,
    Case,
    Cli,
    Raises,
    Warns,
    check_cli,
    eraser_for,
    run,
    small_sweep,
)
from tests.conftest import get_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread, as the audit runs (``--threads 1``): on tiny models a second thread only adds
    synchronisation, and on a shared 2-core machine it made each case ~7x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.item}: {c.id}" for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    exp = case.expect
    if isinstance(exp, Raises):
        if exp.error is ModelLoadError and "CUDA" in exp.fix and torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        with pytest.raises(exp.error) as info:
            case.call(tmp_path)
        assert isinstance(info.value, PeHooksError)
        assert exp.fix in " ".join(str(info.value).split()), str(info.value)
    elif isinstance(exp, Cli):
        why = check_cli(case.call(tmp_path), exp.fix)
        assert why is None, why
    elif isinstance(exp, Warns):
        with pytest.warns(exp.warning) as seen:
            case.call(tmp_path)
        msgs = [" ".join(str(w.message).split()) for w in seen if issubclass(w.category, exp.warning)]
        assert any(exp.fix in m for m in msgs), msgs
    else:
        exp.check(case.call(tmp_path))
    stray = [q.name for q in tmp_path.iterdir() if q.name.startswith(".")]
    assert not stray, f"half-written artefacts left behind: {stray}"


def test_every_item_of_the_issue_has_cases() -> None:
    items = {c.item for c in CASES}
    assert items == set(ITEMS), set(ITEMS) ^ items
    assert len(CASES) >= 243


def test_bound_hooks_change_nothing_on_their_own_model() -> None:
    a = get_model("tiny-gpt2")
    h = p.replace(a, p.shift(3))
    want = run(a, [(n, getattr(fn, "__wrapped__", fn)) for n, fn in h])
    assert torch.equal(run(a, h), want)
    assert not torch.equal(run(a, h), run(a, []))


def test_eraser_round_trip_checks_the_fingerprint(tmp_path: Path) -> None:
    e = eraser_for("tiny-gpt2")
    back = p.PositionEraser.load(e.save(tmp_path / "e"), model=get_model("tiny-gpt2"))
    assert back.info.fingerprint == e.info.fingerprint and back.info.fingerprint["d_model"] == 64
    x = torch.randn(3, 64)
    # the tensors are bit-identical; a freshly fitted map may be a non-contiguous view, so the
    # matmul kernel (not the data) can differ in the last float bit
    assert all(torch.equal(getattr(back.maps[n], a), getattr(e.maps[n], a)) for n in e.maps for a in ("mean", "left", "right"))
    assert torch.allclose(back.transform(x, layer=0), e.transform(x, layer=0), atol=1e-6)
    gpt2 = get_model("tiny-gpt2")
    assert torch.allclose(run(gpt2, back.hooks(gpt2)), run(gpt2, e.hooks(gpt2)), atol=1e-5)


def test_interrupted_sweep_save_then_a_new_save_loads(tmp_path: Path) -> None:
    res = small_sweep()
    folder = tmp_path / "sweep-x"
    res.save(folder, extra=lambda d: (d / "sweep.png").write_bytes(b"old png"))
    res2 = p.SweepResult(res.df.assign(value=res.df.value + 1), res.meta)
    res2.save(folder)
    assert not (folder / "sweep.png").exists(), "a new save replaces the folder whole"
    pd.testing.assert_frame_equal(p.SweepResult.load(folder).df, res2.df, check_dtype=False)


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


