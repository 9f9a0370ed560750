"""Does in-model erasure hold? An independent probe on held-out texts, inside the model.

    python -m benchmarks.inmodel_erasure [--test-start 576] [--test-seqs 96] [--layers 1,2,4,8,15,22,29]

SmolLM2-135M (real weights), the embedded stdlib-docstring corpus, 64-token sequences. Every probe
is scored on sequences ``test-start .. test-start + test-seqs`` of the corpus, which no eraser saw
(the erasers are fitted on the first sequences). Probe: scikit-learn ``LogisticRegression`` (lbfgs,
C=1) on standardised ``blocks.L.hook_resid_pre`` states, positions 1..63 in 8 equal bins (chance
0.125), 4-fold ``GroupKFold`` by sequence. *Token floor*: the same probe on the token embeddings
alone (``hook_embed``: no position in a rotary model), i.e. what the text itself says about position.

Conditions: raw; the README recipe exactly as written (``fit_eraser(model, None)``: its defaults,
sequential, on the first ``n_seqs`` sequences of the embedded corpus; then ``eraser.hooks(model)``
in-model); the same sequential fit on the first 160 sequences (the previous default size); the
independently fitted eraser (``sequential=False``) in-model, and offline on each layer's own raw
states (``eraser.transform``), both on the default fit sequences.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pe_hooks import load_model
from pe_hooks.data import load_data, stream_activations

N_BINS = 8


def probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 4) -> float:
    accs = []
    with threadpool_limits(1):  # threaded lbfgs on 2 busy cores was measured ~50x slower
        for tr, te in GroupKFold(folds).split(x, y, groups):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
            clf.fit(x[tr], y[tr])
            accs.append(float((clf.predict(x[te]) == y[te]).mean()))
    return float(np.mean(accs))


def collect(model, td, names, hooks=None) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for b in stream_activations(model, td, names, hooks=hooks, progress=False):
        for n in names:
            out[n].append(b.acts[n][:, 1:].numpy())
    return {n: np.concatenate(v).reshape(-1, v[0].shape[-1]) for n, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    from pe_hooks.erasers import fit_eraser

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--test-start", type=int, default=576)
    p.add_argument("--test-seqs", type=int, default=96)
    p.add_argument("--layers", default="1,2,4,8,15,22,29")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/inmodel-erasure.md"))
    args = p.parse_args(argv)
    model = load_model(args.model)
    layers = [int(x) for x in args.layers.split(",")]
    td = load_data(model, None, seq_len=64, n_seqs=args.test_start + args.test_seqs)
    test = td.subset(list(range(args.test_start, len(td))))
    T = test.seq_len - 1
    pos = test.positions[:, 1:].reshape(-1).numpy()
    y = np.minimum((pos - 1) * N_BINS // T, N_BINS - 1)
    groups = np.repeat(np.arange(len(test)), T)
    names = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    times: dict[str, float] = {}
    t = time.perf_counter()
    default = fit_eraser(model, None, progress=False)  # the README recipe, as written
    times["recipe fit"] = time.perf_counter() - t
    n_default = max(default.info.fit_tokens.values()) // T
    if n_default > args.test_start:
        raise SystemExit(f"the default fit uses {n_default} sequences, overlapping the test ones: raise --test-start")
    t = time.perf_counter()
    small = fit_eraser(model, td.subset(list(range(160))), progress=False)
    times["sequential fit on 160"] = time.perf_counter() - t
    t = time.perf_counter()
    indep = fit_eraser(model, None, sequential=False, progress=False)
    times["independent fit"] = time.perf_counter() - t
    raw = collect(model, test, names + ["hook_embed"])
    floor = probe(raw["hook_embed"], y, groups)
    rows = {
        "raw": raw,
        f"README recipe: fit_eraser(model, None) (sequential, {n_default} sequences), in-model":
            collect(model, test, names, default.hooks(model)),
        "sequential fit on 160 sequences (the previous default), in-model": collect(model, test, names, small.hooks(model)),
        "independent fit (sequential=False), in-model": collect(model, test, names, indep.hooks(model)),
        "independent fit, offline on each layer's raw states": {
            n: indep.transform(torch.as_tensor(raw[n]), hook_name=n).numpy() for n in names
        },
    }
    lines = [
        f"# In-model erasure on {args.model}: independent held-out probe\n",
        "Command: `python -m benchmarks.inmodel_erasure`. " + (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        f"Token floor (probe on `hook_embed`): **{floor:.3f}**; chance 0.125. Fit times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ".\n",
        "| condition | " + " | ".join(f"L{layer}" for layer in layers) + " | max − floor |",
        "|---|" + "---|" * (len(layers) + 1),
    ]
    for label, acts in rows.items():
        accs = [probe(acts[n], y, groups) for n in names]
        lines.append(f"| {label} | " + " | ".join(f"{a:.3f}" for a in accs) + f" | {max(accs) - floor:+.3f} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
