"""``pe-hooks sweep``: per-layer position probes with and without each intervention."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pe_hooks.cli.args import existing_file, int_at_least, layer_list
from pe_hooks.models.precision import DTYPE_NAMES


def probe_list(text: str) -> tuple[str, ...]:
    """``--nonlinear``: comma-separated probe names, or ``none``."""
    from pe_hooks.probes.nonlinear import SWEEP_PROBES

    if text.strip().lower() in ("none", ""):
        return ()
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in SWEEP_PROBES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown probe(s) {bad}; choose from {', '.join(SWEEP_PROBES)} or 'none'")
    return names


def _as_arg(value: object) -> str:
    """An option's value as it is typed: lists comma-separated (an empty probe list is ``none``)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sweep",
        help="probe position at every layer under each intervention; writes CSV, JSON, Markdown and PNG",
    )
    p.add_argument("--model", default="smollm2-135m", help="model name (default: smollm2-135m)")
    p.add_argument("--text", type=existing_file, default=None, help="a UTF-8 text file (paragraphs = documents); default: the embedded stdlib-docstring corpus")
    p.add_argument("--interventions", default="baseline,zero,remove,erase",
                   help="comma-separated: baseline, zero, remove, erase (LEACE, per layer, offline), erase-mean, "
                        "erase-pca, erase-quadratic, erase-inmodel (LEACE hooks at every layer inside the model)")
    p.add_argument("--layers", type=layer_list, default=None, help="'all', '0,4,8' or 'start:stop[:step]' (n_layers = final residual)")
    p.add_argument("--site", default="resid_pre", choices=["resid_pre", "resid_mid", "resid_post"])
    p.add_argument("--n-seqs", type=int_at_least(1), default=256, help="probe sequences (default 256; at least --folds)")
    p.add_argument("--n-fit", type=int_at_least(1), default=128, help="other sequences used to fit erasers (default 128)")
    p.add_argument("--seq-len", type=int_at_least(3), default=64)
    p.add_argument("--bins", type=int_at_least(2), default=8)
    p.add_argument("--folds", type=int_at_least(2), default=4)
    p.add_argument("--batch-size", type=int_at_least(1), default=16)
    p.add_argument("--nonlinear", type=probe_list, default=("knn_cosine", "knn_euclidean", "mlp"),
                   help="non-linear probes beside the linear one: comma-separated from knn_cosine, knn_euclidean, mlp; "
                        "'none' for none (default: all three, at ~8 spread layers)")
    p.add_argument("--nonlinear-seqs", type=int_at_least(2), default=64,
                   help="sampled sequences the non-linear probes use (default 64)")
    p.add_argument("--sample-seqs", type=int_at_least(2), default=256,
                   help="probe sequences kept (seeded sample) to score the classifier probe on (default 256)")
    p.add_argument("--workers", type=int_at_least(1), default=None,
                   help="threads scoring the sites in parallel (default: the CPU count, at most 4; results do not depend on it)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=DTYPE_NAMES,
                   help="model dtype (default auto: bfloat16 where the device multiplies it natively -- AVX512-BF16/AMX "
                        "CPUs, Ampere+ GPUs -- 2-3x faster forwards on SmolLM2 here, probe accuracies within 0.01 of float32 "
                        "(benchmarks/main_job.py); float32 elsewhere)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pe_hooks import load_model
    from pe_hooks.core.atomic import check_writable_target
    from pe_hooks.probes import sweep
    from pe_hooks.probes.result import SWEEP_FILES
    from pe_hooks.reports import sweep_table, write_sweep_markdown
    from pe_hooks.viz import plot_sweep

    t0 = time.perf_counter()
    folder = args.out / f"sweep-{args.model.replace('/', '_')}"
    check_writable_target(folder, "sweep report", SWEEP_FILES)  # fail now, not after the sweep
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    result = sweep(
        model,
        args.text,
        [s.strip() for s in args.interventions.split(",") if s.strip()],
        layers=args.layers,
        site=args.site,
        seq_len=args.seq_len,
        n_seqs=args.n_seqs,
        n_fit=args.n_fit,
        n_bins=args.bins,
        folds=args.folds,
        batch_size=args.batch_size,
        sample_seqs=args.sample_seqs,
        nonlinear=args.nonlinear,
        workers=args.workers,
        nonlinear_seqs=args.nonlinear_seqs,
    )
    result.meta["command"] = "pe-hooks sweep " + " ".join(
        f"--{k.replace('_', '-')} {_as_arg(v)}" for k, v in vars(args).items() if k not in ("func", "command") and v is not None
    )
    result.meta["seconds"] = round(time.perf_counter() - t0, 1)

    def report(tmp: Path) -> None:  # the Markdown and the figure join the same atomic artefact
        write_sweep_markdown(result, tmp)
        plot_sweep(result, tmp / "sweep.png")

    paths = result.save(folder, extra=report)  # the folder appears complete, or not at all
    paths["md"], paths["png"] = folder / "sweep.md", folder / "sweep.png"
    print(sweep_table(result, "acc"))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}  ({result.meta['seconds']} s)")
    return 0
