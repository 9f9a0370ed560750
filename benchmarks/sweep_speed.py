"""The probe sweep on the real default model: time, held-out accuracy and memory, against what a
user would otherwise write.

    python -m benchmarks.sweep_speed            # ~25 min on 2 cores; writes benchmarks/results/sweep-speed-smollm2.{md,json}
    python -m benchmarks.sweep_speed --quick    # one round, no memory scaling (a smoke run)
    python -m benchmarks.sweep_speed --memory-only  # re-measure the memory scaling into the existing results

Model SmolLM2-135M-Instruct (real weights, offline), the embedded corpus: 256 sequences x 64 tokens,
positions 1..63 in 8 bins, 4 folds grouped by sequence (``seq % 4``), 10 layers. In one process,
interleaved and rotating after a warm-up, ``--rounds`` rounds of:

- **bare**: the model's forwards over the same token batches (16 sequences), nothing kept;
- **bare trunk**: the same forwards ended after the last probed layer (no unembedding), as the
  sweep's own stream ends them -- the fair floor for the sweep's cost;
- **sweep**: ``pe_hooks.sweep(model, data, ["baseline"], layers=..., token_floor=False)`` (one pass;
  its defaults include the kNN and MLP probes at 8 of the 10 layers);
- **sweep, linear only**: the same with ``nonlinear=()`` -- the probe the naive workflow computes;
- **two-pass**: the sweep as it was before the one-pass redesign (``pe_hooks.sweep`` of git
  ``TWO_PASS_REV``, LDA with data-driven shrinkage scored in a second pass), run in a child process
  from a temporary ``git worktree`` of that commit (the time of its sweep call only; skipped with a
  note when the checkout has no git history);
- **naive**: ``run_with_cache`` of the 10 layers -> NumPy -> per layer ``StandardScaler`` +
  scikit-learn ``LogisticRegression(max_iter=1000)`` on the same tokens and folds.

Held-out accuracy per layer of the sweep, the two-pass sweep and the naive probe sit beside the
times. Then, each in a fresh child process (peak RSS is per process): the baseline sweep at 1x, 2x,
4x, 8x the sequences (peak RSS and growth above the loaded model). The default main job
(``pe-hooks sweep --model smollm2-135m``) is timed by ``benchmarks/main_job.py``, in both dtypes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAYERS = [1, 2, 4, 8, 12, 16, 20, 24, 28, 30]
N_SEQS, SEQ_LEN, BINS, FOLDS, BATCH = 256, 64, 8, 4, 16
OUT = Path(__file__).parent / "results"


def _names(model: Any) -> list[str]:
    from pe_hooks.sites.inspect import inspect

    s = inspect(model)
    return [s.resid_hook(layer) for layer in LAYERS]


def bare(model: Any, td: Any) -> dict[int, float]:
    with torch.no_grad():
        for i in range(0, len(td), BATCH):
            model(td.tokens[i:i + BATCH], attention_mask=td.mask[i:i + BATCH])
    return {}


def bare_trunk(model: Any, td: Any) -> dict[int, float]:
    from pe_hooks.data import stream_activations

    for _ in stream_activations(model, td, _names(model)[-1:], batch_size=BATCH, progress=False, check_finite=False):
        pass
    return {}


def _sweep_acc(model: Any, td: Any, **options: Any) -> dict[int, float]:
    from pe_hooks import sweep

    res = sweep(model, td, ["baseline"], layers=LAYERS, n_seqs=N_SEQS, seq_len=SEQ_LEN, token_floor=False, progress=False,
                **options)
    return {int(k): float(v) for k, v in res.pivot("acc")["baseline"].items()}


def new_sweep(model: Any, td: Any) -> dict[int, float]:
    return _sweep_acc(model, td)


def linear_sweep(model: Any, td: Any) -> dict[int, float]:
    return _sweep_acc(model, td, nonlinear=())


TWO_PASS_REV = "254d786"  # the last commit whose sweep made two passes over the probe data

TWO_PASS_CHILD = r"""
import json, sys, time, torch
torch.set_num_threads({threads})
import pe_hooks as p
from pe_hooks.data import load_data
m = p.load_model("smollm2-135m", dtype=getattr(torch, "{dtype}"))  # that commit's load_model takes a torch.dtype
td = load_data(m, None, seq_len={seq_len}, n_seqs={n_seqs}, seed=0)
t0 = time.perf_counter()
res = p.sweep(m, td, ["baseline"], layers={layers}, n_seqs={n_seqs}, seq_len={seq_len}, token_floor=False, progress=False)
el = time.perf_counter() - t0
print(json.dumps({{"_seconds": el, **{{str(k): float(v) for k, v in res.pivot("acc")["baseline"].items()}}}}))
"""


def twopass_sweep(model: Any, td: Any, threads: int = 2, dtype: str | None = None) -> dict[int, float]:
    """The two-pass sweep of ``TWO_PASS_REV``, timed in a child process run from a git worktree of
    that commit (its own ``pe_hooks``) on the model in ``model``'s dtype (or ``dtype``); ``{}`` with
    a note if there is no git history to check out."""
    if dtype is None:
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    import shutil
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="pe-hooks-two-pass-"))
    tree = tmp / "tree"
    add = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), TWO_PASS_REV],
                         capture_output=True, text=True)
    try:
        if add.returncode != 0:
            print(f"two-pass: skipped (git worktree add {TWO_PASS_REV}: {add.stderr.strip()[:200]})", flush=True)
            return {}
        code = TWO_PASS_CHILD.format(threads=threads, dtype=dtype, seq_len=SEQ_LEN, n_seqs=N_SEQS, layers=LAYERS)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=7200, cwd=tree,
                             env={**__import__("os").environ, "PYTHONPATH": str(tree)})
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        got = json.loads(out.stdout.strip().splitlines()[-1])
        return {("_seconds" if k == "_seconds" else int(k)): v for k, v in got.items()}  # type: ignore[misc]
    finally:
        if add.returncode == 0:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def naive(model: Any, td: Any) -> dict[int, float]:
    """What a user writes: cache every layer, then scikit-learn per layer, same tokens and folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    names = _names(model)
    caches: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with torch.no_grad():
        for i in range(0, len(td), BATCH):
            _, cache = model.run_with_cache(td.tokens[i:i + BATCH], attention_mask=td.mask[i:i + BATCH],
                                            names_filter=lambda n: n in caches)
            for n in names:
                caches[n].append(cache[n][:, 1:].float().numpy())
            del cache
    t = np.tile(np.arange(1, SEQ_LEN), len(td))
    y = np.clip((t - 1) * BINS // (SEQ_LEN - 1), 0, BINS - 1)
    fold = np.repeat(np.arange(len(td)) % FOLDS, SEQ_LEN - 1)
    out = {}
    for layer, n in zip(LAYERS, names):
        x = np.concatenate(caches[n]).reshape(-1, caches[n][0].shape[-1])
        correct = 0
        for f in range(FOLDS):
            tr, te = fold != f, fold == f
            sc = StandardScaler().fit(x[tr])
            clf = LogisticRegression(max_iter=1000).fit(sc.transform(x[tr]), y[tr])
            correct += int((clf.predict(sc.transform(x[te])) == y[te]).sum())
        out[layer] = correct / len(y)
    return out


CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads({threads})
import pe_hooks as p
from pe_hooks.data.corpus import stdlib_docstrings
m = p.load_model("smollm2-135m", dtype="{dtype}")
# the whole embedded corpus as one token stream cut into 63-token windows after a BOS (2909 of them):
# enough sequences for 8x the default, from the same text
stream = [i for t in stdlib_docstrings(min_chars=0) for i in m.tokenizer(t, add_special_tokens=False)["input_ids"]]
data = torch.tensor([[m.tokenizer.bos_token_id] + stream[k * 63:(k + 1) * 63] for k in range({n_seqs})])
import gc, os, threading
gc.collect()
page = os.sysconf("SC_PAGE_SIZE")
def rss():  # current resident set, bytes (the process's max RSS is set by the model load, above)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
base, top, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        top[0] = max(top[0], rss())
        time.sleep(0.02)
th = threading.Thread(target=sample, daemon=True)
th.start()
t0 = time.perf_counter()
r = p.sweep(m, data, ["baseline"], layers={layers}, n_seqs={n_seqs}, token_floor=False, progress=False)
el = time.perf_counter() - t0
done.set()
th.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"n_seqs": {n_seqs}, "seconds": el, "peak_rss_mb": peak / 1024, "growth_mb": (top[0] - base) / 2**20,
                  "n_tokens_moments": r.meta["n_tokens_moments"], "n_tokens_sample": r.meta["n_tokens_sample"]}}))
"""


def memory_scaling(factors: list[int], threads: int, dtype: str = "float32") -> list[dict[str, Any]]:
    rows = []
    for k in factors:
        code = CHILD.format(threads=threads, layers=LAYERS, n_seqs=N_SEQS * k, dtype=dtype)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=7200)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        rows.append({"x tokens": k, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"],
                    help="model dtype (default float32, the setting of issue 12; results of other dtypes get a suffix)")
    ap.add_argument("--memory-only", action="store_true", help="re-measure the memory scaling only, into the existing results")
    args = ap.parse_args()
    if args.memory_only:
        path = OUT / "sweep-speed-smollm2.json"
        res = json.loads(path.read_text())
        res["memory_scaling"] = memory_scaling([1, 2, 4, 8], args.threads)
        res["memory_date"] = time.strftime("%Y-%m-%d %H:%M")
        path.write_text(json.dumps(res, indent=1))
        (OUT / "sweep-speed-smollm2.md").write_text(report(res))
        print(report(res))
        return
    torch.set_num_threads(args.threads)
    import pe_hooks as p
    from pe_hooks.data import load_data
    from pe_hooks.models.precision import dtype_name

    model = p.load_model("smollm2-135m", dtype=args.dtype)
    td = load_data(model, None, seq_len=SEQ_LEN, n_seqs=N_SEQS, seed=0)
    conds = {"bare": bare, "bare trunk": bare_trunk, "sweep": new_sweep, "sweep, linear only": linear_sweep,
             "two-pass": lambda m, d: twopass_sweep(m, d, args.threads), "naive": naive}
    bare(model, td.subset(list(range(32))))  # warm-up
    times: dict[str, list[float]] = {k: [] for k in conds}
    accs: dict[str, dict[int, float]] = {}
    rounds = 1 if args.quick else args.rounds
    for r in range(rounds):
        order = list(conds)[r % len(conds):] + list(conds)[: r % len(conds)]
        for name in order:
            t0 = time.perf_counter()
            a = conds[name](model, td)
            elapsed = a.pop("_seconds", time.perf_counter() - t0)  # type: ignore[call-overload]
            if a or name.startswith("bare"):  # a skipped condition (no result) has no time either
                times[name].append(elapsed)
                print(f"round {r} {name}: {elapsed:.1f} s", flush=True)
            if a:
                accs[name] = a
    times = {k: v for k, v in times.items() if v}
    conds = {k: f for k, f in conds.items() if k in times}
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {k: statistics.median([a / b for a, b in zip(times[k], times["bare"])]) for k in conds}
    per_layer = [{"layer": la, **{k: accs[k][la] for k in ("sweep", "sweep, linear only", "two-pass", "naive")
                                  if k in accs}} for la in LAYERS]
    scaling = [] if args.quick else memory_scaling([1, 2, 4, 8], args.threads, args.dtype)
    res = {"machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}, torch {torch.__version__}",
           "dtype": dtype_name(next(model.parameters()).dtype),
           "rounds": rounds, "times": times, "median_s": med, "ratio_to_bare": ratios, "per_layer": per_layer,
           "memory_scaling": scaling, "date": time.strftime("%Y-%m-%d %H:%M")}
    OUT.mkdir(exist_ok=True)
    name = "sweep-speed-smollm2" + ("" if args.dtype == "float32" else f"-{args.dtype}") + ("-quick" if args.quick else "")
    (OUT / f"{name}.json").write_text(json.dumps(res, indent=1))
    (OUT / f"{name}.md").write_text(report(res))
    print(report(res))


def report(res: dict[str, Any]) -> str:
    med, ratio = res["median_s"], res["ratio_to_bare"]
    dtype_flag = "" if res.get("dtype", "float32") == "float32" else f" --dtype {res['dtype']}"
    quick_flag = " --quick" if res["rounds"] == 1 and not res["memory_scaling"] else ""
    lines = [
        "# Probe sweep on SmolLM2-135M: one pass vs bare forwards, the two-pass sweep and the naive workflow", "",
        f"Command: `python -m benchmarks.sweep_speed{dtype_flag}{quick_flag}` ({res['date']}; {res['machine']}; {res['rounds']} interleaved "
        f"rounds after a warm-up, order rotating). Model SmolLM2-135M-Instruct (real weights, {res.get('dtype', 'float32')}); data: the embedded "
        f"corpus, {N_SEQS} sequences x {SEQ_LEN} tokens; positions 1..{SEQ_LEN - 1} in {BINS} bins; {FOLDS} folds "
        f"grouped by sequence; layers {LAYERS}.", "",
        "| | median wall (s) | × bare | mean held-out acc |", "|---|---|---|---|",
    ]
    for k in ("bare", "bare trunk", "sweep", "sweep, linear only", "two-pass", "naive"):
        if k not in med:
            continue
        acc = "—" if k.startswith("bare") else f"{np.mean([r[k] for r in res['per_layer']]):.3f}"
        lines.append(f"| {k} | {med[k]:.1f} | {ratio[k]:.2f} | {acc} |")
    trunk = statistics.median([a / b for a, b in zip(res["times"]["sweep"], res["times"]["bare trunk"])])
    lines += ["", f"naive / sweep = **{med['naive'] / med['sweep']:.1f}×**; sweep / bare = **{ratio['sweep']:.2f}×** "
              f"(sweep / bare trunk = {trunk:.2f}×; ratios are medians of per-round ratios)."]
    if "sweep, linear only" in med:
        lines += [f"With the linear probe only (what the naive workflow computes): naive / sweep = "
                  f"**{med['naive'] / med['sweep, linear only']:.1f}×**, sweep / bare = **{ratio['sweep, linear only']:.2f}×**."]
    lines += ["",
              "Held-out accuracy per layer (same tokens, same folds):", "",
              "| layer | sweep (stacked) | two-pass (LDA) | naive (StandardScaler + LogisticRegression) | sweep − naive |",
              "|---|---|---|---|---|"]
    for r in res["per_layer"]:
        two = f"{r['two-pass']:.3f}" if "two-pass" in r else "—"
        lines.append(f"| {r['layer']} | {r['sweep']:.3f} | {two} | {r['naive']:.3f} | {r['sweep'] - r['naive']:+.3f} |")
    if res["memory_scaling"]:
        lines += ["", "Memory of the baseline sweep (10 layers) as the tokens grow, each in a fresh process"
                  + (f" (measured {res['memory_date']} with `--memory-only`)" if res.get("memory_date") else "") + ":", "",
                  "| × tokens | sequences | wall (s) | process peak RSS (MB; set by the model load) | sweep's peak resident memory above its start, sampled every 20 ms (MB) | tokens in moments | tokens in sample |",
                  "|---|---|---|---|---|---|---|"]
        for r in res["memory_scaling"]:
            lines.append(f"| {r['x tokens']} | {r['n_seqs']} | {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} | {r['growth_mb']:.0f} | "
                         f"{r['n_tokens_moments']} | {r['n_tokens_sample']} |")
    lines += ["", "The default main job (`pe-hooks sweep --model smollm2-135m`) is timed, in both dtypes, by "
              "`python -m benchmarks.main_job` ([main-job-smollm2.md](main-job-smollm2.md))."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
