"""Which probes still find position in SmolLM2 after linear (LEACE) vs quadratic erasure?

    python -m benchmarks.nonlinear_smollm2 [--n-fit 384] [--layers 2 8 15 29] [--cache acts.pt] [--n-score 96] [--out benchmarks/results/nonlinear-smollm2.md]

Data: the embedded stdlib-docstring corpus, 64-token sequences (BOS first). Residual stream
``blocks.L.hook_resid_pre`` at layers 2, 8, 15, 29. Erasers are fitted offline on each layer's own
activations of ``--n-fit`` (384) sequences; probes are scored on ``--n-score`` *other* sequences (a
seeded ``Reservoir`` of whole sequences), 4-fold ``GroupKFold`` by sequence, positions 1..63 in 8
equal-width bins (position 0 / BOS excluded everywhere). Probes: logistic regression, kNN (k=15,
cosine and Euclidean) and a one-hidden-layer MLP (64 units; ``probe_positions``'s ``"mlp"``, since
2026-11-29 the batched torch MLP of the sweep -- ``results/nonlinear-smollm2*.md`` were measured
earlier with scikit-learn's ``MLPClassifier``, early stopping), all on standardised features; each
with a shuffled control (positions permuted within each sequence).

Conditions: raw; LEACE (``fit_on_arrays(method="leace")``, default Fourier features, K=8);
quadratic (``pe_hooks.erasers.quadratic``, 8 bins as classes, shrinkage on).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

LAYERS = (2, 8, 15, 29)
PROBES = ("linear", "knn_cosine", "knn_euclidean", "mlp")
N_BINS = 8


def collect(n_fit: int, n_score: int, seed: int) -> tuple[dict[int, tuple[np.ndarray, ...]], dict[int, tuple[np.ndarray, ...]]]:
    """Activations of the fit sequences (all tokens) and of the scored reservoir, per layer."""
    from pe_hooks import load_model
    from pe_hooks.data import load_data, stream_activations
    from pe_hooks.probes.nonlinear import Reservoir

    model = load_model("smollm2-135m")
    data = load_data(model, None, seq_len=64, n_seqs=n_fit + n_score)
    fit, score = data.split(n_fit)
    names = [f"blocks.{L}.hook_resid_pre" for L in LAYERS]
    fit_out: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {L: [] for L in LAYERS}
    for b in stream_activations(model, fit, names, batch_size=16, progress=False):
        keep = b.mask.bool()
        ids = b.index[:, None].expand_as(b.positions)
        for L, n in zip(LAYERS, names, strict=True):
            fit_out[L].append((b.acts[n][keep], b.positions[keep], ids[keep]))
    res = Reservoir(max_seqs=n_score, seed=seed)
    for b in stream_activations(model, score, names, batch_size=16, progress=False):
        res.add({n: b.acts[n] for n in names}, b.positions, seq_ids=(b.index + n_fit).tolist(), mask=b.mask)
    fits = {L: tuple(torch.cat([t[i] for t in fit_out[L]]).numpy() for i in range(3)) for L in LAYERS}
    scores = {L: res.arrays(n) for L, n in zip(LAYERS, names, strict=True)}
    return fits, scores


def run_layer(L: int, fit: tuple[np.ndarray, ...], score: tuple[np.ndarray, ...], n_folds: int, seed: int,
              pool: float = 0.0) -> dict:
    from pe_hooks.erasers import fit_on_arrays
    from pe_hooks.erasers.quadratic import fit_quadratic
    from pe_hooks.probes.nonlinear import probe_positions

    xf, pf, _ = fit
    xs, ps, gs = score
    t0 = time.perf_counter()
    leace = fit_on_arrays(xf, pf, method="leace")
    t_leace = time.perf_counter() - t0
    q = fit_quadratic(xf[pf > 0], pf[pf > 0], n_bins=N_BINS, max_position=63, pool=pool)
    t_quad = time.perf_counter() - t0 - t_leace
    conds = {
        "raw": xs,
        "LEACE (Fourier K=8)": np.asarray(leace.transform(xs, positions=ps)),
        "quadratic (8 bins)" + (f", pool={pool:g}" if pool else ""): q.apply(torch.as_tensor(xs), torch.as_tensor(ps)).numpy(),
    }
    rows = []
    for cname, xx in conds.items():
        r = probe_positions(xx, ps, gs, n_bins=N_BINS, max_position=63, probes=PROBES, n_folds=n_folds, seed=seed)
        rows.append({"layer": L, "eraser": cname, "probes": {k: v.as_dict() for k, v in r.items()}})
        print(f"layer {L:2d} {cname:22s} " + " ".join(f"{k}={v.accuracy:.3f}/{v.shuffled:.3f}({v.seconds:.0f}s)"
                                                    for k, v in r.items()), flush=True)
    counts = q.counts.tolist()
    note = (f"layer {L}: {len(np.unique(fit[2]))} fit sequences, {min(counts)}..{max(counts)} tokens per bin (d=576); "
            f"fit LEACE {t_leace:.0f} s, quadratic {t_quad:.0f} s; quadratic edit rank {q.rank}")
    return {"rows": rows, "note": note}


def render(results: list[dict], header: str) -> str:
    rows = [r for res in results for r in res["rows"]]
    any_r = rows[0]["probes"]["linear"]
    lines = [
        "# Position probes after linear vs quadratic erasure, SmolLM2-135M",
        "",
        header,
        "",
        "Residual stream `blocks.L.hook_resid_pre`; embedded docstring corpus, 64-token sequences. Erasers fitted "
        "offline on each layer's own activations of the fit sequences; probes scored on "
        f"{any_r['n_seqs']} *other* sequences ({any_r['n_tokens']} tokens, positions 1..63 in {N_BINS} equal-width "
        f"bins, BOS excluded), {any_r['n_folds']}-fold GroupKFold by sequence. Chance = max(1/{N_BINS}, majority-bin "
        f"rate) = {any_r['chance']:.3f}.",
        "",
        "Each cell: held-out accuracy / shuffled control (positions permuted within each sequence).",
        "",
        "| layer | eraser | linear (logreg) | kNN cosine | kNN Euclidean | MLP (64) |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["layer"]):
        p = r["probes"]
        lines.append(f"| {r['layer']} | {r['eraser']} | "
                     + " | ".join(f"{p[k]['accuracy']:.3f} / {p[k]['shuffled']:.3f}" for k in PROBES) + " |")
    lines += ["", "Fit details:", ""] + [f"- {res['note']}" for res in sorted(results, key=lambda r: r["note"])] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n-fit", type=int, default=384)
    p.add_argument("--n-score", type=int, default=96)
    p.add_argument("--n-folds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=float, default=0.0, help="quadratic: shrink bin covariances towards the pooled one")
    p.add_argument("--layers", type=int, nargs="+", default=list(LAYERS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/nonlinear-smollm2.md"))
    p.add_argument("--cache", type=Path, default=None, help="store/reuse the activations here (a .pt file)")
    p.add_argument("--json", type=Path, default=None, help="also write the per-layer results here")
    p.add_argument("--render", type=Path, nargs="+", default=None, help="only render these --json files into --out")
    args = p.parse_args(argv)
    if args.render:
        import json

        results = [res for f in args.render for res in json.loads(f.read_text())]
        args.out.write_text(render(results, "Generated by `python -m benchmarks.nonlinear_smollm2` (merged runs)."))
        return 0
    torch.manual_seed(args.seed)
    # One BLAS/OpenMP thread: on 2 busy shared cores the default thread pools oversubscribe (probes
    # ran ~50x slower); the forward passes are not the bottleneck.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        fits, scores = torch.load(args.cache, weights_only=False)
    else:
        fits, scores = collect(args.n_fit, args.n_score, args.seed)
        if args.cache is not None:
            torch.save((fits, scores), args.cache)
    t_fwd = time.perf_counter() - t_all
    results = []
    for L in args.layers:
        xf, pf, gf = fits[L]
        keep = gf < args.n_fit  # fit sequences have ids 0..n_fit-1 (a cache may hold more)
        xs, ps, gs = scores[L]
        ks = np.isin(gs, np.unique(gs)[: args.n_score])  # a cache may hold more scored sequences
        results.append(run_layer(L, (xf[keep], pf[keep], gf[keep]), (xs[ks], ps[ks], gs[ks]), args.n_folds, args.seed,
                                 args.pool))
    total = time.perf_counter() - t_all
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(results))
    header = (f"Generated by `python -m benchmarks.nonlinear_smollm2` (seed {args.seed}; {platform.machine()} CPU, 2 "
              f"shared cores; total {total:.0f} s, forwards {t_fwd:.0f} s).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, header))
    print(f"wrote {args.out} in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
