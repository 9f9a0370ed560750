"""``pe-hooks branches``: UMAP of sampled continuations, raw vs position-erased vs intervened; or of
given texts (``--texts FILE``, any model, encoders included), or of sampled continuations read by
another model (``--reader NAME``).

By default the layer is chosen where position is measurably strongest in the branch latents
(``--layer auto``; ``pe_hooks.branching.layer_choice``). The pipeline is ``pe_hooks.run_branches``; this
command loads the model, calls it and writes the result. Writes to ``OUT/branches-MODEL/`` (with ``--reader``:
``OUT/branches-READER-reading-MODEL/``): ``branches-layer{L}.png``
per layer, ``metrics.csv`` (tidy), ``layer-scores.csv`` (with ``--layer auto``: every layer's
score), ``metrics.md`` and ``branches.md`` (layer choice, headline scores with nulls, all metrics,
+ the generated texts), ``texts.json`` (texts, prompts, settings).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pe_hooks import conditions
from pe_hooks.branching.collect import LAYER_NAMES
from pe_hooks.branching.run import BRANCHES_FILES
from pe_hooks.branching.texts import read_texts
from pe_hooks.cli.args import int_at_least, number_in
from pe_hooks.conditions import Intervention
from pe_hooks.core.atomic import check_writable_target
from pe_hooks.core.errors import ArgumentError
from pe_hooks.models.precision import DTYPE_NAMES

INTERVENTION_HELP = (
    "verb of the intervened run (repeatable: one view each): zero, remove, none, or replace:MAP with MAP one of "
    "shuffle, reverse, shift=K, constant=P, scale=F (default: remove)"
)
TEXTS_HELP = (
    "read these texts instead of sampling (any model, encoders included): a .json list / list of lists / "
    "{group: [texts]} (or the texts.json of a branches report), or a text file with one text per line and groups "
    "separated by blank lines; each text is one trajectory"
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "branches", help="UMAP of generation branches: raw vs position-erased vs intervened, with metrics"
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompt", action="append", default=None,
                   help="prompt (repeatable); default: the built-in prompt set (pe_hooks.branching.DEFAULT_PROMPTS)")
    p.add_argument("--texts", type=Path, default=None, help=TEXTS_HELP)
    p.add_argument("--reader", default=None,
                   help="model that reads the sampled branches (decoded, re-tokenised): e.g. --model smollm2-135m "
                   "--reader minilm-l6")
    p.add_argument("--max-tokens", type=int_at_least(2), default=None,
                   help="tokens kept per text read (--texts, --reader; default: the shortest text's)")
    p.add_argument("--branches", type=int_at_least(2), default=8, help="continuations per prompt (default 8)")
    p.add_argument("--tokens", type=int_at_least(2), default=128, help="new tokens per continuation (default 128)")
    p.add_argument("--layer", type=layer_arg, action="append", default=None,
                   help="layer (repeatable; negative counts from the end), 'final' (the final residual stream, "
                   "blocks.{n-1}.hook_resid_post at any --site; reported as layer n_layers, as in pe-hooks sweep), "
                   "or 'auto' (default): the layer where position is measurably strongest in the branch latents "
                   "(held-out positional share; if no layer has one, where position is most decodable)")
    p.add_argument("--auto-layers", type=int_at_least(1), default=1, help="how many layers 'auto' picks (default 1)")
    p.add_argument("--early", type=early_arg, default=None,
                   help="also show the same tokens at this early layer (an integer or 'final')")
    p.add_argument("--site", default="resid_pre", choices=["resid_pre", "resid_mid", "resid_post"])
    p.add_argument("--intervention", action="append", default=None, help=INTERVENTION_HELP)
    p.add_argument("--eraser", default="leace", choices=["leace", "mean", "pca", "quadratic"], help="method of the erased view")
    p.add_argument("--erase-on", default="both", choices=["reference", "branches", "both"],
                   help="fit the eraser on the reference corpus, on the branches (cross-fitted), or both")
    p.add_argument("--fit-seqs", type=int_at_least(1), default=128, help="reference-corpus sequences that fit the eraser")
    p.add_argument("--temperature", type=number_in(above=0), default=1.0, help="sampling temperature (> 0)")
    p.add_argument("--top-p", type=number_in(maximum=1, above=0), default=0.95, help="nucleus sampling, in (0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neighbors", type=int_at_least(2), default=15, help="UMAP n_neighbors")
    p.add_argument("--min-dist", type=number_in(0, 1), default=0.1, help="UMAP min_dist, in [0, 1]")
    p.add_argument("--k", type=int_at_least(1), default=10, help="neighbours of the kNN metrics")
    p.add_argument("--n-perm", type=int_at_least(10), default=100,
                   help="label permutations of the headline scores' nulls (default 100)")
    p.add_argument("--massive", type=number_in(0), default=8.0, help="flag tokens with norm > this x median (0: off)")
    p.add_argument("--kv-cache", default="auto", choices=["auto", "on", "off"],
                   help="decode with the KV cache: auto (default) checks once that cached steps equal a full "
                   "forward and decodes without the cache if not; on requires it; off never uses it")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=DTYPE_NAMES,
                   help="model dtype (default float32: the sampled tokens, hence the branches, depend on it; "
                        "auto = bfloat16 where the device multiplies it natively, 2-3x faster on SmolLM2 here)")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="parent folder: the report goes to OUT/branches-MODEL/ (default results/, as pe-hooks sweep)")
    p.set_defaults(func=run)


def layer_arg(text: str) -> int | str:
    """``--layer`` / ``--early`` values: an integer, ``auto`` or ``final`` (``LAYER_NAMES``)."""
    if text.strip().lower() in LAYER_NAMES:
        return text.strip().lower()
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a layer is an integer, 'auto' or 'final', not {text!r}") from exc


def early_arg(text: str) -> int | str:
    """``--early``: an integer or ``final``."""
    value = layer_arg(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("--early is a layer: an integer or 'final', not 'auto'")
    return value


def _folder_name(model: str, reader: str | None) -> str:
    name = model if reader is None else f"{reader}-reading-{model}"
    return name.replace("/", "_")


def parse_intervention(text: str) -> Intervention:
    """``--intervention``'s value in the one intervention language (``pe_hooks.conditions``)."""
    return conditions.parse_intervention(text, what="--intervention")


def run(args: argparse.Namespace) -> int:
    from pe_hooks import load_model, run_branches
    from pe_hooks.reports import write_branches_report
    from pe_hooks.viz import plot_branches_run

    t0 = time.perf_counter()
    specs = args.intervention or ["remove"]
    for spec in specs:
        parse_intervention(spec)  # fail before any work, naming the option
    if args.texts is not None and (args.prompt or args.reader):
        raise ArgumentError("--texts are read by --model; give --prompt (sampled, optionally read by --reader) or "
                            "--texts, not both")
    texts = read_texts(args.texts) if args.texts is not None else None  # bad files fail before loading
    folder = args.out / f"branches-{_folder_name(args.model, args.reader)}"
    check_writable_target(folder, "branches report", BRANCHES_FILES)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    result = run_branches(
        model, args.prompt, texts=texts, reader=args.reader, max_tokens=args.max_tokens,
        intervention=specs[0] if len(specs) == 1 else specs,
        name=args.model, n_branches=args.branches, max_new_tokens=args.tokens,
        layers=args.layer or ["auto"], auto_layers=args.auto_layers, early=args.early, site=args.site,
        eraser=args.eraser, erase_on=args.erase_on, fit_seqs=args.fit_seqs,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, n_neighbors=args.neighbors,
        min_dist=args.min_dist, k=args.k, n_perm=args.n_perm, massive=args.massive or None,
        kv_cache={"auto": None, "on": True, "off": False}[args.kv_cache], device=args.device, dtype=args.dtype,
    )
    result.timings["load"] += load_s
    report: list[str] = []

    def figures_and_markdown(tmp: Path) -> None:  # the figures and the report join the same atomic artefact
        t = time.perf_counter()
        plot_branches_run(result, tmp)
        result.timings["figures"] = time.perf_counter() - t
        result.timings["total"] = time.perf_counter() - t0
        report.append(write_branches_report(result, tmp))

    paths = result.save(folder, extra=figures_and_markdown)
    print(report[0])
    pngs = [folder / f"branches-layer{layer}.png" for layer in result.layers]
    print(f"wrote {', '.join(str(p) for p in pngs)}, {', '.join(p.name for p in paths.values())}, metrics.md, "
          f"branches.md to {folder} ({result.timings['total']:.0f} s)")
    return 0
