"""``pe-hooks branches``: UMAP of sampled continuations, raw vs position-erased vs intervened.

By default the layer is chosen where position is measurably strongest in the branch latents
(``--layer auto``; ``pe_hooks.probes.layer_choice``). Writes to ``OUT/branches-MODEL/``: ``branches-layer{L}.png``
per layer, ``metrics.csv`` (tidy), ``layer-scores.csv`` (with ``--layer auto``: every layer's
score), ``metrics.md`` and ``branches.md`` (layer choice, headline scores with nulls, all metrics,
+ the generated texts), ``texts.json`` (texts, prompts, settings).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pe_hooks.cli.args import int_at_least, number_in
from pe_hooks.core.atomic import check_writable_target, write_artefact
from pe_hooks.core.errors import DataError
from pe_hooks.models.precision import DTYPE_NAMES

BRANCHES_FILES = ("branches-layer*.png", "metrics.csv", "layer-scores.csv", "metrics.md", "branches.md", "texts.json")

INTERVENTION_HELP = (
    "verb of the intervened run: zero, remove, none, or replace:MAP with MAP one of shuffle, "
    "reverse, shift=K, constant=P, scale=F (default: remove)"
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "branches", help="UMAP of generation branches: raw vs position-erased vs intervened, with metrics"
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompt", action="append", default=None,
                   help="prompt (repeatable); default: the built-in prompt set (pe_hooks.probes.branches.DEFAULT_PROMPTS)")
    p.add_argument("--branches", type=int_at_least(2), default=8, help="continuations per prompt (default 8)")
    p.add_argument("--tokens", type=int_at_least(2), default=128, help="new tokens per continuation (default 128)")
    p.add_argument("--layer", type=layer_arg, action="append", default=None,
                   help="layer (repeatable; negative counts from the end), or 'auto' (default): the layer where "
                   "position is measurably strongest in the branch latents (held-out positional share; if no layer "
                   "has one, where position is most decodable)")
    p.add_argument("--auto-layers", type=int_at_least(1), default=1, help="how many layers 'auto' picks (default 1)")
    p.add_argument("--early", type=int, default=None, help="also show the same tokens at this early layer")
    p.add_argument("--site", default="resid_pre", choices=["resid_pre", "resid_mid", "resid_post"])
    p.add_argument("--intervention", default="remove", help=INTERVENTION_HELP)
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


REPLACE_MAPS = ("shuffle", "reverse", "shift", "constant", "scale")


def layer_arg(text: str) -> int | str:
    """``--layer`` values: an integer or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a layer is an integer or 'auto', not {text!r}") from exc


def parse_intervention(spec: str) -> tuple[str, str | None, float | None]:
    """``"zero"`` -> ("zero", None, None); ``"replace:shift=3"`` -> ("replace", "shift", 3.0)."""
    s = spec.strip().lower()
    if s in ("zero", "remove", "none"):
        return s, None, None
    if s.startswith("replace:"):
        name, _, arg = s[len("replace:"):].partition("=")
        if name in REPLACE_MAPS:
            if name in ("shift", "scale") and not arg:
                raise DataError(f"--intervention replace:{name} needs a value, e.g. replace:{name}=2")
            try:
                value = float(arg) if arg else None
            except ValueError as exc:
                raise DataError(f"bad number in --intervention {spec!r}: {exc}; e.g. replace:{name}=2") from exc
            if value is not None and name != "scale" and not value.is_integer():
                raise DataError(f"--intervention {spec!r}: {name} needs a whole number, e.g. replace:{name}=2")
            if name == "scale":
                from pe_hooks.interventions import scale

                scale(value if value is not None else 1.0)  # a finite factor > 0, checked before any work
            if name == "constant" and value is not None and value < 0:
                raise DataError(f"--intervention {spec!r}: positions start at 0; pass replace:constant=P with P >= 0")
            return "replace", name, value
    raise DataError(f"unknown --intervention {spec!r}; {INTERVENTION_HELP}")


def intervention_hooks(model: Any, spec: str, length: int, seed: int = 0) -> Any:
    """The ``HookList`` of ``spec`` (``None`` for "none"); ``length`` = positions in use."""
    from pe_hooks import constant, remove, replace, reverse, scale, shift, shuffle, zero
    from pe_hooks.core.errors import SchemeError

    kind, name, arg = parse_intervention(spec)
    if kind == "none":
        return None
    if kind == "zero":
        return zero(model)
    if kind == "remove":
        # one mean over every position in use, the same table at every cached decoding step
        try:
            return remove(model, reference=range(length))
        except SchemeError:  # a site without reference positions (ALiBi: the mean bias is exact)
            return remove(model)
    maps = {
        "shuffle": lambda: shuffle(length, seed=int(arg) if arg is not None else seed),
        "reverse": lambda: reverse(length),
        "shift": lambda: shift(int(arg or 0)),
        "constant": lambda: constant(int(arg or 0)),
        "scale": lambda: scale(float(arg or 1.0)),
    }
    return replace(model, maps[str(name)]())


def run(args: argparse.Namespace) -> int:
    from pe_hooks import branches, fit_eraser, inspect, load_model
    from pe_hooks.data import load_data
    from pe_hooks.probes import DEFAULT_PROMPTS, analyze, make_views
    from pe_hooks.probes.separation import metrics_frame
    from pe_hooks.reports import write_branches_markdown
    from pe_hooks.viz import plot_branches

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    parse_intervention(args.intervention)  # fail before any work
    folder = args.out / f"branches-{args.model.replace('/', '_')}"
    check_writable_target(folder, "branches report", BRANCHES_FILES)
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    scheme = inspect(model)
    asked = args.layer or ["auto"]
    explicit = [v for v in asked if v != "auto"]
    if explicit:
        scheme.check_layers(explicit)  # fail before any work
    early = None if args.early is None else scheme.check_layers([args.early])[0]
    prompts = args.prompt or list(DEFAULT_PROMPTS)
    kw: dict[str, Any] = dict(
        n_branches=args.branches, max_new_tokens=args.tokens, temperature=args.temperature, top_p=args.top_p,
        seed=args.seed, site=args.site, massive=args.massive or None,
        kv_cache={"auto": None, "on": True, "off": False}[args.kv_cache],
    )
    timings["load"] = time.perf_counter() - t0
    t = time.perf_counter()
    collect: list[int | str] = list(dict.fromkeys(asked + ([early] if early is not None else [])))
    raw = branches(model, prompts, layers=collect, auto_layers=args.auto_layers, **kw)
    timings["generate + collect (+ score every layer)" if "auto" in asked else "generate + collect"] = (
        time.perf_counter() - t)
    layers = sorted(set(raw.auto_layers) | set(scheme.check_layers(explicit) if explicit else []))
    eraser = None
    if args.erase_on in ("reference", "both"):
        t = time.perf_counter()
        seq_len = min(max(64, raw.prompt_len + args.tokens), scheme.n_ctx)
        ref = load_data(model, None, seq_len=seq_len, n_seqs=args.fit_seqs, seed=args.seed)
        eraser = fit_eraser(model, ref, method=args.eraser, site=args.site, layers=layers, seq_len=seq_len,
                            sequential=False)  # applied offline to each layer's latents
        timings["fit eraser (reference)"] = time.perf_counter() - t
    inter = None
    hooks = intervention_hooks(model, args.intervention, raw.prompt_len + args.tokens, seed=args.seed)
    if hooks is not None:
        t = time.perf_counter()
        inter = branches(model, prompts, hooks=hooks, layers=layers, **kw)
        timings["generate + collect (intervened)"] = time.perf_counter() - t
    rows: list[dict[str, Any]] = []
    pngs = []
    group = {int(b): int(p) for b, p in zip(raw.branch, raw.prompt if raw.prompt is not None else raw.branch * 0)}
    t = time.perf_counter()
    with write_artefact(folder, "branches report", 1, replaces=BRANCHES_FILES) as tmp:  # complete or not at all
        for layer in layers:
            views = make_views(
                raw, layer, eraser=eraser, eraser_name=f"erased ({args.eraser}, reference)",
                crossfit=args.erase_on in ("branches", "both"), intervened=inter,
                intervened_name=f"intervened ({args.intervention})", early=early if early != layer else None,
            )
            analysis = analyze(views, layer=layer, seed=args.seed, n_neighbors=args.neighbors, min_dist=args.min_dist,
                               k=args.k, n_perm=args.n_perm)
            rows += analysis.rows
            how = " (auto)" if layer in raw.auto_layers else ""
            plot_branches(analysis, tmp / f"branches-layer{layer}.png", branch_group=group, title=(
                f"{args.model}, layer {layer}{how} ({args.site}): {len(prompts)} prompt(s) x {args.branches} branches "
                f"x {args.tokens} tokens, seed {args.seed}"))
            pngs.append(folder / f"branches-layer{layer}.png")
        timings["UMAP + metrics + figures"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        metrics_frame(rows).to_csv(tmp / "metrics.csv", index=False)
        written = ["metrics.csv", "metrics.md", "branches.md", "texts.json"]
        if raw.layer_scores is not None:
            raw.layer_scores.assign(chosen=raw.layer_scores["layer"].isin(raw.auto_layers)).to_csv(
                tmp / "layer-scores.csv", index=False)
            written.insert(1, "layer-scores.csv")
        settings = {
            "model": args.model, "branches": args.branches, "tokens": args.tokens, "temperature": args.temperature,
            "top_p": args.top_p, "seed": args.seed, "site": args.site, "eraser": args.eraser, "fit_seqs": args.fit_seqs,
            "intervention": args.intervention, "massive": args.massive, "n_perm": args.n_perm,
        }
        report = write_branches_markdown(
            tmp, settings=settings, raw=raw, intervened=inter, rows=rows, layers=layers, timings=timings
        )
        (tmp / "texts.json").write_text(json.dumps({
            "model": args.model, "prompts": prompts, "settings": {k: str(v) for k, v in vars(args).items() if k != "func"},
            "layers": layers, "auto_layers": raw.auto_layers,
            "texts": raw.texts, "intervened_texts": inter.texts if inter is not None else [], "timings_s": timings,
        }, indent=1))
    print(report)
    print(f"wrote {', '.join(str(p) for p in pngs)}, {', '.join(written)} to {folder} ({timings['total']:.0f} s)")
    return 0
