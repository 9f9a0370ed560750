"""Linear (LEACE) vs quadratic erasure applied inside SmolLM2: linear, kNN and MLP probes on held-out
texts, and the next-token loss they cost.

    python -m benchmarks.inmodel_quadratic [--fit-seqs 384] [--test-start 576] [--test-seqs 96]
                                           [--layers 2,8,15,22,29] [--cache DIR]

Both erasers are fitted the way the README recommends for in-model use: ``fit_eraser(model, data,
method=..., sequential=True)`` at every ``resid_pre`` (each layer fitted on states already erased
upstream), on the first ``--fit-seqs`` sequences of the embedded docstring corpus; LEACE with its
defaults (Fourier features of position, 8 frequencies), the quadratic eraser with 8 position bins as
classes (concept-erasure's ``QuadraticFitter``: equal class means *and* covariances). Then
``eraser.hooks(model)`` erases all 30 layers during the forward.

Scored on sequences ``test-start .. test-start + test-seqs`` (never seen by either eraser), positions
1..63 in 8 equal bins (chance 0.125), 4-fold ``GroupKFold`` by sequence, each beside its
shuffled-label control: *linear* = scikit-learn ``StandardScaler`` + ``LogisticRegression`` (lbfgs,
C=1); *kNN* = scikit-learn ``KNeighborsClassifier`` (15 neighbours, cosine / Euclidean, standardised);
*MLP* = ``pe_hooks.probes.nonlinear.mlp_predictions`` (64 ReLU units). Token floor: the same probes on
``hook_embed`` (the text alone; no position in a rotary model). Loss: mean next-token cross-entropy
on the same test sequences with the hooks attached.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pe_hooks import PositionEraser, fit_eraser, load_model
from pe_hooks.data import load_data
from pe_hooks.probes.nonlinear import probe_positions

from .inmodel_erasure import collect
from .inmodel_erasure import probe as logreg_probe

PROBES = ("knn_cosine", "knn_euclidean", "mlp")
N_BINS = 8


def loss(model, td, hooks=None) -> float:  # type: ignore[no-untyped-def]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(td), 8):
            toks = td.tokens[i:i + 8]
            if hooks is not None:
                with hooks.applied(model):
                    value = float(model(toks, return_type="loss"))
            else:
                value = float(model(toks, return_type="loss"))
            total += value * len(toks)
            count += len(toks)
    return total / count


def fitted(model, fit, method: str, cache: Path | None) -> tuple[PositionEraser, float]:  # type: ignore[no-untyped-def]
    path = cache / f"eraser-{method}-{len(fit)}" if cache is not None else None
    if path is not None and path.exists():
        return PositionEraser.load(path, model), float("nan")
    t = time.perf_counter()
    eraser = fit_eraser(model, fit, method=method, sequential=True, progress=True)
    seconds = time.perf_counter() - t
    if path is not None:
        eraser.save(path)
    return eraser, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--fit-seqs", type=int, default=384)
    p.add_argument("--test-start", type=int, default=576)
    p.add_argument("--test-seqs", type=int, default=96)
    p.add_argument("--layers", default="2,8,15,22,29")
    p.add_argument("--cache", type=Path, default=None, help="keep the fitted erasers here (reruns skip the fits)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/inmodel-quadratic.md"))
    args = p.parse_args(argv)
    if args.fit_seqs > args.test_start:
        raise SystemExit("--fit-seqs must not reach --test-start: the test texts would be in the fit")
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = load_model(args.model)
    layers = [int(x) for x in args.layers.split(",")]
    td = load_data(model, None, seq_len=64, n_seqs=args.test_start + args.test_seqs)
    fit, test = td.subset(list(range(args.fit_seqs))), td.subset(list(range(args.test_start, len(td))))
    T = test.seq_len - 1
    pos = np.tile(np.arange(1, T + 1), len(test))
    groups = np.repeat(np.arange(len(test)), T)
    y = np.minimum((pos - 1) * N_BINS // T, N_BINS - 1)
    names = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    erasers, fit_seconds = {}, {}
    for method in ("leace", "quadratic"):
        erasers[method], fit_seconds[method] = fitted(model, fit, method, args.cache)
    conditions = {"raw": None, "LEACE (Fourier, 8 freq.), in-model": erasers["leace"].hooks(model),
                  "quadratic (8 bins), in-model": erasers["quadratic"].hooks(model)}
    raw = collect(model, test, [*names, "hook_embed"])

    def scores(x: np.ndarray) -> dict[str, tuple[float, float]]:
        out = {"linear": (logreg_probe(x, y, groups), logreg_probe(x, _shuffled(y, groups), groups))}
        for name, s in probe_positions(x, pos, groups, n_bins=N_BINS, max_position=T, probes=PROBES).items():
            out[name] = (s.accuracy, s.shuffled)
        return out

    floor = scores(raw["hook_embed"])
    table: list[str] = []
    losses: dict[str, float] = {}
    for label, hooks in conditions.items():
        acts = raw if hooks is None else collect(model, test, names, hooks)
        losses[label] = loss(model, test, hooks)
        for layer, n in zip(layers, names):
            sc = scores(acts[n])
            table.append(f"| {layer} | {label} | " + " | ".join(f"{a:.3f} / {s:.3f}" for a, s in sc.values()) + " |")
            print(table[-1], flush=True)
    base = losses["raw"]
    lines = [
        f"# Linear vs quadratic erasure inside {args.model}: probes on held-out texts, and the loss\n",
        f"Command: `python -m benchmarks.inmodel_quadratic` ({time.strftime('%Y-%m-%d')}, x86_64 CPU, 2 cores; "
        f"{time.perf_counter() - t0:.0f} s in all). " + (__doc__ or "").split("\n\n")[2].replace("\n", " "),
        "",
        (__doc__ or "").split("\n\n")[3].replace("\n", " "),
        "",
        f"Fit: {args.fit_seqs} sequences x 63 tokens; "
        + ", ".join(f"{m} {s:.0f} s" for m, s in fit_seconds.items() if s == s) + ". "
        f"Test: {len(test)} sequences ({len(y)} tokens).",
        "",
        "Each cell: held-out accuracy / shuffled-label control.",
        "",
        "| layer | condition | linear (logreg) | kNN cosine | kNN Euclidean | MLP (64) |",
        "|---|---|---|---|---|---|",
        "| tokens (floor) | `hook_embed` | " + " | ".join(f"{a:.3f} / {s:.3f}" for a, s in floor.values()) + " |",
        *table,
        "",
        "Next-token loss on the test texts (nats; hooks at every layer):",
        "",
        "| condition | loss | change |",
        "|---|---|---|",
        *[f"| {label} | {v:.3f} | {v - base:+.3f} |" for label, v in losses.items()],
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


def _shuffled(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    from pe_hooks.probes.nonlinear import shuffle_within_groups

    return shuffle_within_groups(y, groups, seed=0)


if __name__ == "__main__":
    raise SystemExit(main())
