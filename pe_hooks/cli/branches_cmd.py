"""``pe-hooks branches``: UMAP of sampled continuations, raw vs position-erased vs intervened."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("branches", help="UMAP of generation branches: raw vs position-erased vs intervened, with metrics")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompt", action="append", default=None, help="prompt (repeatable); default: a built-in prompt")
    p.add_argument("--branches", type=int, default=8, help="continuations per prompt (default 8)")
    p.add_argument("--tokens", type=int, default=48, help="new tokens per continuation (default 48)")
    p.add_argument("--layer", type=int, action="append", default=None, help="layer (repeatable); default: middle and late")
    p.add_argument("--intervention", default="zero", help="verb for the intervened run: zero, remove or none")
    p.add_argument("--eraser", default="leace", choices=["leace", "mean", "pca"], help="method of the erased view")
    p.add_argument("--fit-seqs", type=int, default=128, help="reference-corpus sequences that fit the eraser")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors")
    p.add_argument("--out", type=Path, default=Path("results"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from pe_hooks import inspect, load_model
    from pe_hooks.data import load_data
    from pe_hooks.erasers import fit_eraser
    from pe_hooks.interventions import remove, zero
    from pe_hooks.probes.separation import metrics_table
    from pe_hooks.viz.branches import analyze, branches, keep_mask
    from pe_hooks.viz.umap_plot import plot_branches

    t0 = time.perf_counter()
    model = load_model(args.model)
    scheme = inspect(model)
    layers = args.layer or [scheme.n_layers // 2, scheme.n_layers - 1]
    kw = dict(n_branches=args.branches, max_new_tokens=args.tokens, temperature=args.temperature,
              top_p=args.top_p, seed=args.seed, layers=layers)
    raw = branches(model, args.prompt, **kw)  # type: ignore[arg-type]
    seq_len = max(64, raw.prompt_len + args.tokens)
    ref = load_data(model, None, seq_len=min(seq_len, scheme.n_ctx), n_seqs=args.fit_seqs)
    eraser = fit_eraser(model, ref, method=args.eraser, layers=layers, seq_len=ref.seq_len)
    verbs = {"zero": zero, "remove": remove}
    inter = None
    if args.intervention in verbs:
        inter = branches(model, args.prompt, hooks=verbs[args.intervention](model), **kw)  # type: ignore[arg-type]
    folder = args.out / f"branches-{args.model.replace('/', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for layer in layers:
        keep = keep_mask(raw)
        x = raw.latents[layer][keep]
        b, p = raw.branch[keep], raw.position[keep]
        views = {
            "raw": (x, b, p),
            f"erased ({args.eraser})": (
                eraser.transform(x, layer=layer, positions=p), b, p),
        }
        if inter is not None:
            k2 = keep_mask(inter)
            views[f"intervened ({args.intervention})"] = (
                inter.latents[layer][k2], inter.branch[k2], inter.position[k2])
        analysis = analyze(views, layer=layer, seed=args.seed, n_neighbors=args.neighbors)
        rows += analysis.rows
        plot_branches(analysis, folder / f"branches-layer{layer}.png",
                      title=f"{args.model}, layer {layer}: {args.branches} continuations x {args.tokens} tokens")
    df, _ = metrics_table(rows)
    df.to_csv(folder / "metrics.csv", index=False)
    md = [f"# Branches: {args.model}", "", f"Prompt(s): {args.prompt or 'default'}; {args.branches} branches x {args.tokens} tokens; "
          f"seed {args.seed}. Views: *raw* latents of the generated tokens; *erased* = the same latents through a "
          f"{args.eraser} eraser fitted on {args.fit_seqs} reference-corpus sequences (not the branches); *intervened* = "
          f"new branches generated and read with `{args.intervention}` applied. Massive-activation tokens and the prompt "
          "are excluded. Chance kNN branch purity = 1/branches.", ""]
    for layer in layers:
        _, table = metrics_table([r for r in rows if r["layer"] == layer])
        md += [f"## Layer {layer}", "", table, ""]
    md += ["## Generated continuations", ""] + [f"{i}. {t!r}" for i, t in enumerate(raw.texts)]
    (folder / "branches.md").write_text("\n".join(md) + "\n")
    pd.set_option("display.width", 200)
    print("\n".join(md[: 4 + 4 * len(layers)]))
    print(f"\nwrote {folder} ({time.perf_counter() - t0:.0f} s)")
    return 0
