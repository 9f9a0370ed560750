"""The default main job (``pe-hooks sweep --model smollm2-135m``: 4 conditions, 31 sites, 256
sequences, linear + kNN + MLP probes) in both model dtypes: wall time, peak memory, and whether the
answers agree.

    python -m benchmarks.main_job              # ~12 min on 2 cores; writes benchmarks/results/main-job-smollm2.{md,json}
    python -m benchmarks.main_job --rounds 1   # one run per dtype

``--dtype auto`` (the default) runs the model in bfloat16 where the CPU multiplies it natively
(AVX512-BF16/AMX) and in float32 elsewhere; ``--dtype float32`` is the library's default precision.
Each round runs both, in rotating order, each in a fresh child process (the command a user types;
model load and imports included, peak RSS from ``/usr/bin/time -v``), each right after a float32 bare
forward pass over the 256 probe sequences in this process: this shared machine's speed drifts by
~10-30% from hour to hour, so the job is also given in bare passes (machine-independent units).

The agreement table compares every cell of the two dtypes' tables (same sequences, folds, seeds):
the largest and the mean absolute difference per metric, over every layer and condition.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.sweep_speed import bare

OUT = Path(__file__).parent / "results"
DTYPES = ("float32", "auto")
METRICS = ("acc", "acc_knn_cosine", "acc_knn_euclidean", "acc_mlp", "acc_shuffled", "r2", "rmse")


def bare_pass(model: Any, td: Any) -> float:
    """Seconds of ``sweep_speed.bare`` (plain forwards over ``td``): the speed of the machine right now."""
    t0 = time.perf_counter()
    bare(model, td)
    return time.perf_counter() - t0


def run_job(dtype: str, out: Path) -> tuple[float, float, str]:
    """One main job in a child process: (seconds, peak RSS in MB, the dtype it reports)."""
    exe = Path(sys.executable).parent / "pe-hooks"
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-v", str(exe), "sweep", "--model", "smollm2-135m", "--dtype", dtype,
                          "--out", str(out)], capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    rss = [ln for ln in res.stderr.splitlines() if "Maximum resident set size" in ln]
    meta = json.loads((out / "sweep-smollm2-135m" / "sweep.json").read_text())["meta"]
    return seconds, int(rss[0].split()[-1]) / 1024 if rss else float("nan"), str(meta["dtype"])


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> list[dict[str, Any]]:
    """Per metric: cells compared, max and mean |b - a| over every layer and condition."""
    keys = ["layer", "intervention", "metric"]
    both = a.merge(b, on=keys, suffixes=("_a", "_b"))
    rows = []
    for metric in METRICS:
        d = both[both.metric == metric]
        diff = (d.value_b - d.value_a).abs().dropna()
        if len(diff):
            worst = d.loc[diff.idxmax()]
            rows.append({"metric": metric, "cells": len(diff), "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                         "where": f"layer {int(worst.layer)}, {worst.intervention}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import pe_hooks as p
    from pe_hooks.data import load_data

    model = p.load_model("smollm2-135m")
    td = load_data(model, None, seq_len=64, n_seqs=256, seed=0)
    bare_pass(model, td.subset(list(range(32))))  # warm-up
    runs: dict[str, list[dict[str, Any]]] = {d: [] for d in DTYPES}
    tables: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for dtype in (DTYPES if r % 2 == 0 else DTYPES[::-1]):
                bare = bare_pass(model, td)
                out = Path(tmp) / f"{dtype}-{r}"
                seconds, rss, used = run_job(dtype, out)
                runs[dtype].append({"seconds": seconds, "bare_s": bare, "x_bare": seconds / bare, "peak_rss_mb": rss, "dtype": used})
                tables[dtype] = pd.read_csv(out / "sweep-smollm2-135m" / "sweep.csv")
                print(f"round {r} --dtype {dtype} ({used}): {seconds:.0f} s, bare pass {bare:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    res = {
        "machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds, "runs": runs,
        "agreement": agreement(tables["float32"], tables["auto"]),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "main-job-smollm2.json").write_text(json.dumps(res, indent=1))
    (OUT / "main-job-smollm2.md").write_text(report(res))
    print(report(res))


def report(res: dict[str, Any]) -> str:
    lines = [
        "# The main job on SmolLM2-135M in float32 and in bfloat16", "",
        f"Command: `python -m benchmarks.main_job` ({res['date']}; {res['machine']}; {res['rounds']} round(s), order "
        "rotating). Each run: `pe-hooks sweep --model smollm2-135m --dtype D` in a fresh process (4 conditions, 31 "
        "sites, 256 probe + 128 eraser-fit sequences of the embedded corpus x 64 tokens; linear + kNN + MLP probes; "
        "imports and model load included), right after a float32 bare forward pass over the 256 probe sequences.", "",
        "| `--dtype` | model dtype | runs (s) | median (s) | median bare passes | bare pass before each run (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype, rs in res["runs"].items():
        secs = [r["seconds"] for r in rs]
        bares = ", ".join(f"{r['bare_s']:.1f}" for r in rs)
        lines.append(
            f"| {dtype} | {rs[0]['dtype']} | {', '.join(f'{s:.0f}' for s in secs)} | **{statistics.median(secs):.0f}** | "
            f"{statistics.median(r['x_bare'] for r in rs):.1f} | {bares} | "
            f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
    lines += ["", "Agreement of the two tables (every layer −1..30 × condition; `auto` − `float32`):", "",
              "| metric | cells | max abs difference | where | mean abs difference |", "|---|---|---|---|---|"]
    for a in res["agreement"]:
        lines.append(f"| {a['metric']} | {a['cells']} | {a['max_abs']:.4f} | {a['where']} | {a['mean_abs']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
