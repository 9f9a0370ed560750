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
