"""The sweep's MLP probe (``pe_hooks.probes.nonlinear.mlp_predictions``, torch, every fold and label
set in one batched model) against scikit-learn's ``MLPClassifier`` on the same SmolLM2 states.

    python -m benchmarks.mlp_probe [--layers 2,16,24] [--n-seqs 64]

SmolLM2-135M (real weights), ``blocks.L.hook_resid_pre`` of ``--n-seqs`` sequences of the embedded
corpus (the sweep's ``nonlinear_seqs``), raw and after a LEACE eraser fitted offline on 128 *other*
sequences; positions 1..63 in 8 bins, 4 folds grouped by sequence (``seq % 4``), real and
shuffled-within-sequence labels. scikit-learn: ``StandardScaler`` per training fold +
``MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, early_stopping=True, n_iter_no_change=8,
max_iter=200, random_state=0)``, 8 fits (4 folds x 2 label sets), one thread. Ours: the same 8
networks in one call, one torch thread. Same tokens, same folds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "results" / "mlp-probe-smollm2.md"


def sklearn_mlp(x: torch.Tensor, fold: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    xa, out = x.numpy(), torch.zeros_like(labels)
    with threadpool_limits(1):
        for f in range(int(fold.max()) + 1):
            tr, te = (fold != f).numpy(), (fold == f).numpy()
            sc = StandardScaler().fit(xa[tr])
            for k in range(labels.shape[0]):
                clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, early_stopping=True, n_iter_no_change=8,
                                    max_iter=200, random_state=0)
                clf.fit(sc.transform(xa[tr]), labels[k].numpy()[tr])
                out[k, torch.from_numpy(te)] = torch.as_tensor(clf.predict(sc.transform(xa[te])))
    return out


def main(argv: list[str] | None = None) -> int:
    import pe_hooks as p
    from pe_hooks.data import load_data, stream_activations
    from pe_hooks.probes.nonlinear import mlp_predictions, shuffle_within_groups

    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="2,16,24")
    ap.add_argument("--n-seqs", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    layers = [int(v) for v in args.layers.split(",")]
    names = [f"blocks.{la}.hook_resid_pre" for la in layers]
    model = p.load_model("smollm2-135m")
    td = load_data(model, None, seq_len=64, n_seqs=args.n_seqs + 128)
    probe, fit = td.subset(list(range(args.n_seqs))), td.subset(list(range(args.n_seqs, len(td))))
    eraser = p.fit_eraser(model, fit, layers=layers, sequential=False, progress=False)
    acts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for b in stream_activations(model, probe, names, progress=False):
        for n in names:
            acts[n].append(b.acts[n][:, 1:])
    T = td.seq_len - 1
    pos = torch.arange(1, T + 1).repeat(args.n_seqs)
    seq = torch.arange(args.n_seqs).repeat_interleave(T)
    y = (pos - 1) * 8 // T
    labels = torch.stack([y, torch.as_tensor(shuffle_within_groups(y.numpy(), seq.numpy(), seed=0))])
    fold = seq % 4
    rows = []
    for layer, n in zip(layers, names):
        raw = torch.cat(acts[n]).reshape(-1, model.cfg.d_model)
        for cond, x in (("raw", raw), ("LEACE", eraser.transform(raw, hook_name=n))):
            res = {}
            for impl, fn in (("scikit-learn", sklearn_mlp), ("pe-hooks", lambda a, b, c: mlp_predictions(a, b, c))):
                t0 = time.perf_counter()
                pred = fn(x.float(), fold, labels)
                res[impl] = (time.perf_counter() - t0, float((pred[0] == y).float().mean()),
                             float((pred[1] == labels[1]).float().mean()))
            rows.append((layer, cond, res))
            print(rows[-1], flush=True)
    lines = [
        "# MLP position probe: pe-hooks (batched torch) vs scikit-learn's MLPClassifier, SmolLM2-135M", "",
        f"Command: `python -m benchmarks.mlp_probe` ({time.strftime('%Y-%m-%d')}, x86_64 CPU, one thread). "
        + " ".join((__doc__ or "").split("\n\n")[2].split()), "",
        "| layer | states | scikit-learn: acc / shuffled / seconds | pe-hooks: acc / shuffled / seconds | difference | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for layer, cond, res in rows:
        (ts, a_s, s_s), (tp, a_p, s_p) = res["scikit-learn"], res["pe-hooks"]
        lines.append(f"| {layer} | {cond} | {a_s:.3f} / {s_s:.3f} / {ts:.1f} | {a_p:.3f} / {s_p:.3f} / {tp:.1f} | "
                     f"{a_p - a_s:+.3f} | {ts / tp:.1f}× |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
