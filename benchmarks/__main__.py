"""``python -m benchmarks`` (or ``pe-hooks bench``): run the cases, write JSON + Markdown."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

# torch, pe-hooks and the cases are imported after the options are checked: a bad option is one line
# on stderr and exit code 2 within a fraction of a second

FWD_COLS = ["model", "batch", "seq", "condition", "median_ms", "iqr_ms", "ratio"]
GEN_COLS = ["model", "condition", "median_ms", "tokens_per_s", "ratio"]
SWEEP_COLS = ["n_seqs", "tokens", "bare_s", "sweep_1pass_s", "sweep_s", "naive_s", "1pass/bare", "sweep/bare",
              "naive/sweep", "sweep_rss_growth_mb", "naive_rss_growth_mb", "sweep_acc", "naive_acc", "sweep_1pass_r2"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2 (like pe-hooks' own commands)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pe-hooks bench", description="hook overhead and sweep speed, as ratios in one run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny rounds and sizes")
    p.add_argument("--cases", default="forward,generation,sweep", help="comma-separated subset")
    p.add_argument("--out", type=Path, default=Path("benchmarks"))
    return p


CASES = ("forward", "generation", "sweep")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    want = {c.strip() for c in args.cases.split(",") if c.strip()}
    unknown = sorted(want - set(CASES))
    problem = ""
    if unknown or not want:
        problem = f"unknown --cases {','.join(unknown) or repr(args.cases)}; choose from {','.join(CASES)}"
    elif args.threads < 1:
        problem = f"--threads must be >= 1, got {args.threads}"
    elif args.out.exists() and not args.out.is_dir():
        problem = f"--out {args.out} is a file; pass a folder"
    if problem:  # one line, exit code 2, nothing written
        print(f"pe-hooks bench: error: {problem}", file=sys.stderr)
        return 2
    import torch

    from benchmarks import cases
    from benchmarks.harness import machine, markdown

    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 11
    results: dict[str, object] = {"machine": machine(), "command": "pe-hooks bench " + " ".join(argv or sys.argv[1:])}
    md = [
        "# Benchmarks", "",
        f"Command: `{results['command']}` ({time.strftime('%Y-%m-%d')}). Machine: {results['machine']}.",
        "Ratios are medians of per-round ratios, conditions interleaved in one run after warm-up.", "",
    ]
    if "forward" in want:
        rows = []
        if args.quick:
            rows += cases.forward_overhead("gpt2-small-shaped", [(1, 32)], rounds)
        else:
            rows += cases.forward_overhead("gpt2-small-shaped", [(1, 128), (8, 128), (1, 512)], rounds)
            rows += cases.forward_overhead("smollm2-135m", [(1, 128), (4, 128)], rounds)
        results["forward"] = rows
        md += ["## Forward pass: each intervention vs the bare bridge", "", markdown(rows, FWD_COLS), ""]
    if "generation" in want:
        rows = cases.generation("gpt2-small-shaped", 8 if args.quick else 32, max(2, rounds // 3))
        if not args.quick:
            rows += cases.generation("smollm2-135m", 32, 5)
        results["generation"] = rows
        md += ["## Generation (greedy, KV cache), tokens/s", "", markdown(rows, GEN_COLS), ""]
    if "sweep" in want:
        sizes = [8, 16] if args.quick else [32, 64, 128]
        rows = cases.sweep_vs_naive(sizes, layers=2 if args.quick else 12, threads=args.threads)
        results["sweep"] = rows
        md += ["## Probe sweep (all 12 layers of the GPT-2-small-shaped model) vs the naive workflow", "",
               "naive = `run_with_cache` of every layer -> NumPy -> scikit-learn LogisticRegression per layer with "
               "GroupKFold(4); sweep = `pe_hooks.probes.sweep` (streaming moments, 2 passes); bare = forward passes only. "
               "Peak memory = growth of the child process's max RSS after loading the model.", "",
               markdown(rows, SWEEP_COLS), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "results"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
