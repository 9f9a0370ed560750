"""The benchmark harness runs (no timing assertions: speed is measured in benchmarks/, not tested)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import interleaved, markdown


def test_interleaved_harness_reports_ratios() -> None:
    rows = interleaved({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}, rounds=4, warmup=1)
    assert [r["condition"] for r in rows] == ["a", "b"]
    assert rows[0]["ratio"] == 1.0 and float(rows[1]["ratio"]) > 0
    assert "| condition |" in markdown(rows, ["condition", "ratio"])


def test_quick_forward_case_runs_through_the_cli(tmp_path: Path) -> None:
    from pe_hooks.cli.main import main

    assert main(["bench", "--quick", "--cases", "forward", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "quick.md").read_text()
    assert "bridge + zero (pos_embed)" in text and "raw HF (eager)" in text


def test_bench_without_a_checkout_names_the_fix(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    from pe_hooks.cli import bench_cmd
    from pe_hooks.cli.main import main

    monkeypatch.setattr(bench_cmd, "repository_root", lambda: None)
    path_before = list(sys.path)
    assert main(["bench", "--quick"]) == 2
    assert "clone the repository" in capsys.readouterr().err
    assert sys.path == path_before  # the command never edits sys.path
