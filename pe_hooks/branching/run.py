"""The pipeline of ``pe-hooks branches``, callable from Python: ``run_branches(model, prompts, ...)``.

It samples the branches and collects their latents (choosing the layer with ``layers="auto"``),
fits the reference eraser, generates the intervened branches, and builds and scores the views of
every layer (UMAP + metrics). It returns a ``BranchesRun`` and changes nothing outside it: no file
is written until ``BranchesRun.save(folder)``; the figures are
``pe_hooks.viz.plot_branches_run(run)`` (one ``Figure`` per layer) and the Markdown report
``pe_hooks.reports.write_branches_markdown``, which ``pe-hooks branches`` writes beside the data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import torch

from pe_hooks.branching.analysis import BranchAnalysis, analyze
from pe_hooks.branching.collect import layer_hook, parse_layers, resolve_layers
from pe_hooks.branching.generate import branches
from pe_hooks.branching.grouped import grouped_path_ratio
from pe_hooks.branching.latents import DEFAULT_PROMPTS, BranchLatents
from pe_hooks.branching.separation import metrics_frame
from pe_hooks.branching.texts import TextsLike, groups_of, read_texts, text_latents
from pe_hooks.branching.views import make_views
from pe_hooks.conditions import parse_intervention, resolve_intervention
from pe_hooks.core.atomic import write_artefact
from pe_hooks.core.errors import ArgumentError, DataError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_int, check_number
from pe_hooks.data import load_data
from pe_hooks.erasers import PositionEraser, fit_eraser
from pe_hooks.models.load import load_model
from pe_hooks.models.precision import DTypeName
from pe_hooks.sites.inspect import inspect

#: What ``BranchesRun.save`` and ``pe-hooks branches`` write into the report folder.
BRANCHES_FILES = ("branches-layer*.png", "metrics.csv", "layer-scores.csv", "metrics.md", "branches.md", "texts.json")
ERASE_ON = ("reference", "branches", "both")
#: ``branches``' sampling options, as ``run_branches`` passes them on
SAMPLING = ("n_branches", "max_new_tokens", "temperature", "top_p", "seed", "site", "massive", "kv_cache", "progress")

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class BranchesRun:
    """What ``run_branches`` measured: the latents (``raw``, ``intervened``), one ``BranchAnalysis``
    per layer (views, 2-D embeddings, metric rows), the options as given and the time each stage took.

    ``metrics`` is the tidy frame of every layer's rows; ``settings`` the report's setting
    (``pe_hooks.reports.write_branches_markdown``); ``title(layer)`` the figure title of a layer.
    """

    name: str
    options: dict[str, Any]
    prompts: list[str]
    raw: BranchLatents
    intervened: BranchLatents | None
    analyses: dict[int, BranchAnalysis]
    timings: dict[str, float] = field(default_factory=dict)
    #: ``"sampled"`` (branches sampled from ``name``), ``"texts"`` (given texts read by ``name``) or
    #: ``"reader"`` (branches sampled from ``generator``, read by ``name``)
    source: str = "sampled"
    #: every intervened view's latents, by intervention (``intervened`` is the first)
    interventions: dict[str, BranchLatents] = field(default_factory=dict)
    #: the reader's generator, and its sampled branches (``source == "reader"``)
    generator: str | None = None
    generated: BranchLatents | None = None
    #: the reader's (or model's) number of layers: layer ``n_layers`` is the final residual stream
    n_layers: int | None = None

    @property
    def layers(self) -> list[int]:
        return list(self.analyses)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for analysis in self.analyses.values() for row in analysis.rows]

    @property
    def metrics(self) -> pd.DataFrame:
        """Every layer's metrics: layer, view, space, metric, value."""
        return metrics_frame(self.rows)

    @property
    def settings(self) -> dict[str, Any]:
        """The setting the Markdown report states (``pe_hooks.reports.branches_header``)."""
        o = self.options
        return {
            "model": self.name, "branches": o["n_branches"], "tokens": o["max_new_tokens"],
            "temperature": o["temperature"], "top_p": o["top_p"], "seed": o["seed"], "site": o["site"],
            "eraser": o["eraser"], "fit_seqs": o["fit_seqs"], "intervention": _spec_text(o["intervention"]),
            "massive": o["massive"], "n_perm": o["n_perm"], "source": self.source, "generator": self.generator,
            "texts": len(self.raw.texts), "tokens_read": _tokens_per_text(self.raw),
        }

    def title(self, layer: int) -> str:
        """The figure title of ``layer``: model, layer (and whether ``auto`` chose it), setting."""
        o = self.options
        how = " (auto)" if layer in self.raw.auto_layers else " (final residual)" if layer == self.n_layers else ""
        if self.source == "texts":
            return (f"{self.name}, layer {layer}{how} ({o['site']}): {len(self.prompts)} group(s), "
                    f"{len(self.raw.texts)} given texts x {_tokens_per_text(self.raw)} tokens")
        who = f"{self.name} reading {self.generator}'s branches" if self.source == "reader" else self.name
        read = f" ({_tokens_per_text(self.raw)} read)" if self.source == "reader" else ""
        return (f"{who}, layer {layer}{how} ({o['site']}): {len(self.prompts)} prompt(s) x {o['n_branches']} "
                f"branches x {o['max_new_tokens']} tokens{read}, seed {o['seed']}")

    def branch_group(self) -> dict[int, int]:
        """Branch id -> prompt index (the figure's hue families)."""
        raw = self.raw
        return {int(b): int(p) for b, p in zip(raw.branch, raw.prompt if raw.prompt is not None else raw.branch * 0)}

    def text_groups(self) -> dict[str, list[str]]:
        """The texts read, by group (prompt or given group): ``pe-hooks branches --texts`` reads it back."""
        return groups_of(self.raw)

    def save(self, folder: str | Path, extra: Callable[[Path], Any] | None = None) -> dict[str, Path]:
        """Write ``metrics.csv``, ``layer-scores.csv`` (with ``layers="auto"``) and ``texts.json`` into
        ``folder`` atomically (complete or not at all); ``extra(tmp_folder)`` may add files (the
        figures, the Markdown report) to the same artefact."""
        out = Path(folder)
        raw, inter = self.raw, self.intervened
        with write_artefact(out, "branches report", 1, replaces=BRANCHES_FILES) as tmp:
            self.metrics.to_csv(tmp / "metrics.csv", index=False)
            paths = {"csv": out / "metrics.csv", "json": out / "texts.json"}
            if raw.layer_scores is not None:
                raw.layer_scores.assign(chosen=raw.layer_scores["layer"].isin(raw.auto_layers)).to_csv(
                    tmp / "layer-scores.csv", index=False)
                paths["layer_scores"] = out / "layer-scores.csv"
            if extra is not None:  # first: it may add to the timings
                extra(tmp)
            (tmp / "texts.json").write_text(json.dumps({
                "model": self.name, "prompts": self.prompts, "settings": {k: str(v) for k, v in self.options.items()},
                "layers": self.layers, "auto_layers": raw.auto_layers,
                "texts": raw.texts, "intervened_texts": inter.texts if inter is not None and self.source == "sampled" else [],
                "timings_s": self.timings,
            } | ({"source": self.source, "generator": self.generator, "groups": self.text_groups()}
                 if self.source != "sampled" else {}), indent=1))
        return paths


def intervention_hooks(model: Model, spec: str, length: int, seed: int = 0) -> HookList | None:
    """The hooks the intervened branches are generated under (``None`` for ``"none"`` / ``"baseline"``),
    from the one intervention language (``pe_hooks.conditions``); ``length`` = positions in use
    (``remove`` takes one mean over them, the same table at every cached decoding step)."""
    resolved = resolve_intervention("intervened", _hook_intervention(spec), model, positions=length,
                                    fixed_mean=True, seed=seed)
    return resolved.hooks if len(resolved.hooks) else None


def _hook_intervention(spec: str, what: str = "intervention") -> str:
    """``spec`` if it runs as hooks during generation (the offline erasers cannot)."""
    parsed = parse_intervention(spec, what)
    if parsed.verb.startswith("erase"):
        raise DataError(f"{what} {spec!r}: the intervened branches are generated under hooks, and an eraser is "
                        "fitted offline; use zero, remove, replace:MAP or none (the erased views come from eraser=)")
    return spec


def run_branches(
    model: str | Model = "smollm2-135m",
    prompts: str | Sequence[str] | None = None,
    *,
    texts: TextsLike | None = None,
    reader: str | Model | None = None,
    max_tokens: int | None = None,
    n_branches: int = 8,
    max_new_tokens: int = 128,
    layers: str | Sequence[int | str] = "auto",
    auto_layers: int = 1,
    early: int | str | None = None,
    site: str = "resid_pre",
    intervention: str | Sequence[str] = "remove",
    eraser: str = "leace",
    erase_on: str = "both",
    fit_seqs: int = 128,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    k: int = 10,
    n_perm: int = 100,
    massive: float | None = 8.0,
    kv_cache: bool | None = None,
    device: str = "cpu",
    dtype: torch.dtype | DTypeName | None = None,
    name: str | None = None,
    progress: bool = True,
) -> BranchesRun:
    """Everything ``pe-hooks branches`` computes, as a ``BranchesRun`` (the command's options are these
    keywords, by the same names but ``--branches`` = ``n_branches``, ``--tokens`` = ``max_new_tokens``,
    ``--layer`` = ``layers``, ``--neighbors`` = ``n_neighbors``, ``--kv-cache auto/on/off`` = ``None/True/False``).

    Three sources of trajectories, one report:

    - sampled (default): ``n_branches`` continuations of each prompt, sampled from ``model``;
    - ``texts=``: given texts read by ``model`` (any model, encoders included; nothing is
      generated), one trajectory per text, grouped as ``pe_hooks.branching.texts`` says;
    - ``reader=``: continuations sampled from ``model``, decoded, and read by ``reader``
      (re-tokenised by its tokenizer; the trajectories are the reader's latents).

    Args:
        model: a model name (loaded with ``load_model(model, device=, dtype=)``) or a loaded model.
        prompts: a prompt, a list, or ``None`` for ``DEFAULT_PROMPTS`` (not with ``texts``).
        texts: given texts: a list, a list of lists / a dict of groups, or a file
            (``pe_hooks.branching.texts.read_texts``).
        reader: the model (name or loaded) that reads the sampled branches.
        max_tokens: tokens kept per text read (default: the shortest text's; ``texts``, ``reader``).
        layers, early: as ``pe_hooks.branching.branches``' ``layers`` (``"auto"``, indices, ``"final"``
            = the final residual stream, layer ``n_layers``); ``early``: one more layer shown.
        intervention: the verb(s) of the intervened views: ``zero``, ``remove``, ``replace:MAP``
            (``pe_hooks.conditions``) or ``none``; a list gives one view each. Sampled branches are
            generated *and* read under it; given texts (and a reader's) are read under it.
        eraser: method of the reference eraser (``leace``, ``mean``, ``pca``, ``quadratic``).
        erase_on: fit the erased view's eraser on the reference corpus (``fit_seqs`` sequences), on
            the branches (cross-fitted), or ``both``.
        n_neighbors, min_dist: UMAP's; ``k``: kNN metrics' neighbours; ``n_perm``: the nulls' permutations;
            ``massive``: flag tokens with norm > this x median (``None``: flag nothing).
        device, dtype: ``load_model``'s (a model loaded by name: float32 by default; a built model
            must already have ``dtype`` if it is given).
        name: the model's name in titles and reports (default: the name given, else the model's own).
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "prompts", "texts", "reader")}
    _check_options(options)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    src = _source(model, prompts, texts, reader, options, timings)
    plan = _layer_plan(src.model, layers, early)  # bad layers fail before any work
    timings["load"] = time.perf_counter() - t0 - timings.get("generate", 0.0)
    raw = _timed(timings, f"{src.stage} (+ score every layer)" if plan.auto else src.stage, src.latents,
                 plan.collect, auto_layers=auto_layers, max_tokens=max_tokens)
    chosen = sorted(set(raw.auto_layers) | set(plan.explicit))
    reference = _reference_eraser(src.model, raw, chosen, options, timings) if erase_on != "branches" else None
    inter = _intervened(src, raw, chosen, options, timings)
    erasers = {layer: None if reference is None else _AtHook(reference, layer_hook(src.model, layer, site))
               for layer in chosen}
    analyses = _timed(timings, "UMAP + metrics", _analyses, raw, chosen, erasers, inter, plan.early, options)
    return BranchesRun(src.name, options, raw.prompts, raw, next(iter(inter.values()), None), analyses, timings,
                       source=src.kind, interventions=inter, generator=src.generator, generated=src.generated,
                       n_layers=inspect(src.model).n_layers)


def _timed(timings: dict[str, float], stage: str, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``work(*args, **kwargs)``, its wall time recorded as ``timings[stage]``."""
    t = time.perf_counter()
    out = work(*args, **kwargs)
    timings[stage] = time.perf_counter() - t
    return out


@dataclass
class _Source:
    """Where the trajectories come from: ``model`` (named ``name``) samples branches of ``prompts``
    (``groups is None``), or reads the texts ``groups`` (given texts, or a generator's branches);
    ``options``: ``run_branches``'."""

    model: Model
    name: str
    prompts: list[str]
    options: dict[str, Any]
    groups: dict[str, list[str]] | None = None
    kind: str = "sampled"  # BranchesRun.source
    generator: str | None = None
    generated: BranchLatents | None = None

    @property
    def stage(self) -> str:
        """The name of the collection stage in ``BranchesRun.timings``."""
        return "generate + collect" if self.groups is None else "read"

    def latents(
        self, layers: Sequence[int | str], *, hooks: HookList | None = None, auto_layers: int = 1,
        max_tokens: int | None = None,
    ) -> BranchLatents:
        """The trajectories' latents at ``layers`` (under ``hooks``): new branches sampled, or the
        texts read (``max_tokens`` per text)."""
        o = self.options
        if self.groups is None:
            return branches(self.model, self.prompts, hooks=hooks, layers=layers, auto_layers=auto_layers,
                            **{k: o[k] for k in SAMPLING})
        return text_latents(self.model, self.groups, hooks=hooks, layers=layers, auto_layers=auto_layers,
                            site=o["site"], max_tokens=max_tokens, massive=o["massive"], seed=o["seed"],
                            progress=o["progress"])


def _source(
    model: str | Model, prompts: str | Sequence[str] | None, texts: TextsLike | None, reader: str | Model | None,
    o: dict[str, Any], timings: dict[str, float],
) -> _Source:
    """The source of the trajectories (``run_branches``' three): bad texts fail before any model is
    loaded, a bad reader before anything is sampled; with a reader, the branches are sampled here
    (``timings["generate"]``)."""
    if texts is not None and (prompts is not None or reader is not None):
        raise ArgumentError("texts= are read by model=; give prompts (sampled branches, optionally read by reader=) "
                            "or texts, not both")
    groups = read_texts(texts) if texts is not None else None
    built, name = _loaded(model, o["name"], o["device"], o["dtype"])
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts or DEFAULT_PROMPTS)
    if groups is not None:
        return _Source(built, name, prompt_list, o, groups, kind="texts")
    if reader is None:
        if not inspect(built).causal:
            raise DataError(f"{name} is not a causal language model: it cannot generate branches; use it to read "
                            "given texts (texts=..., pe-hooks branches --texts FILE), or sample from a causal model "
                            f"and read with this one (run_branches('smollm2-135m', reader={name!r}), --model smollm2-135m "
                            f"--reader {name})")
        return _Source(built, name, prompt_list, o)
    read_by, read_name = _loaded(reader, None, o["device"], o["dtype"])
    generator = _Source(built, name, prompt_list, o)
    generated = _timed(timings, "generate", generator.latents, [0])
    return _Source(read_by, read_name, prompt_list, o, groups_of(generated), kind="reader", generator=name,
                   generated=generated)


class _LayerPlan(NamedTuple):
    """The layers ``run_branches`` collects (``"auto"`` included), the explicit ones, the early one."""

    collect: list[int | str]
    explicit: list[int]
    early: int | None
    auto: bool


def _layer_plan(model: Model, layers: str | Sequence[int | str], early: int | str | None) -> _LayerPlan:
    """``run_branches``' ``layers`` and ``early``, checked against the model (``"final"`` resolved to
    layer ``n_layers``)."""
    named, auto = parse_layers(layers)
    explicit = resolve_layers(model, named) if named else []
    early_layer = None if early is None else resolve_layers(model, [early])[0]
    collect: list[int | str] = list(dict.fromkeys((["auto"] if auto else []) + explicit +
                                                  ([early_layer] if early_layer is not None else [])))
    return _LayerPlan(collect, explicit, early_layer, auto)


def _loaded(
    model: str | Model, name: str | None, device: str, dtype: torch.dtype | DTypeName | None
) -> tuple[Model, str]:
    """``(model, its name in reports)``: a name is loaded with ``load_model``; a built model is
    returned as it is (its dtype checked against ``dtype`` if given)."""
    given = model if isinstance(model, str) else None
    built = load_model(model, device=device, dtype=dtype)
    return built, name or given or inspect(built).model_name


def _specs(intervention: str | Sequence[str]) -> list[str]:
    return [intervention] if isinstance(intervention, str) else list(intervention)


def _spec_text(intervention: str | Sequence[str]) -> str:
    return ", ".join(_specs(intervention))


def _tokens_per_text(raw: BranchLatents) -> int:
    return int(len(raw.branch) // max(1, len(np.unique(raw.branch))))


def _intervened(
    src: _Source, raw: BranchLatents, layers: list[int], o: dict[str, Any], timings: dict[str, float]
) -> dict[str, BranchLatents]:
    """The latents of each intervened view: new branches sampled and read under it, or (given texts)
    the same texts read under it."""
    out: dict[str, BranchLatents] = {}
    length = int(raw.sequences.shape[1]) if raw.sequences is not None else raw.prompt_len + o["max_new_tokens"]
    for spec in _specs(o["intervention"]):
        hooks = intervention_hooks(src.model, spec, length, seed=o["seed"])
        if hooks is None:
            continue
        if src.groups is None:
            stage = "generate + collect (intervened)" if not out else f"generate + collect ({spec})"
        else:
            stage = f"read ({spec})"
        out[spec] = _timed(timings, stage, src.latents, layers, hooks=hooks, max_tokens=_tokens_per_text(raw))
    return out


def _check_options(o: dict[str, Any]) -> None:
    """The options ``branches`` and ``fit_eraser`` do not check themselves, checked before any work."""
    specs = _specs(o["intervention"])
    if not specs or len(set(specs)) != len(specs):
        raise ArgumentError(f"intervention must name one verb or a list of distinct verbs, got {o['intervention']!r}")
    for spec in specs:
        _hook_intervention(spec)
    if o["erase_on"] not in ERASE_ON:
        raise ArgumentError(f"erase_on must be one of {ERASE_ON}, got {o['erase_on']!r}")
    check_int(o["fit_seqs"], "fit_seqs", minimum=1)
    check_int(o["n_neighbors"], "n_neighbors", minimum=2, fix="UMAP's n_neighbors (15 by default)")
    check_number(o["min_dist"], "min_dist", minimum=0.0, maximum=1.0, fix="UMAP's min_dist (0.1 by default)")
    check_int(o["k"], "k", minimum=1, fix="neighbours of the kNN metrics (10 by default)")
    check_int(o["n_perm"], "n_perm", minimum=10, fix="label permutations of the nulls (100 by default)")
    if o["max_tokens"] is not None:
        check_int(o["max_tokens"], "max_tokens", minimum=2, fix="tokens kept per text read (default: the shortest text's)")


def _reference_eraser(
    model: Model, raw: BranchLatents, layers: list[int], o: dict[str, Any], timings: dict[str, float]
) -> PositionEraser:
    """The eraser of the ``erased (..., reference)`` view, fitted on ``fit_seqs`` sequences of the
    reference corpus at least as long as the branches (up to the context)."""
    t = time.perf_counter()
    sites = inspect(model)
    length = int(raw.sequences.shape[1]) if raw.sequences is not None else raw.prompt_len + o["max_new_tokens"]
    seq_len = min(max(64, length), sites.n_ctx)
    ref = load_data(model, None, seq_len=seq_len, n_seqs=o["fit_seqs"], seed=o["seed"])
    hooks = list(dict.fromkeys(layer_hook(model, layer, o["site"]) for layer in layers))
    eraser = fit_eraser(model, ref, method=o["eraser"], site=o["site"], hook_names=hooks, seq_len=seq_len,
                        sequential=False)  # applied offline to each layer's latents
    timings["fit eraser (reference)"] = time.perf_counter() - t
    return eraser


@dataclass(frozen=True)
class _AtHook:
    """The reference eraser applied at one layer's hook point (by name: the final residual stream,
    layer ``n_layers``, is no ``blocks.{n_layers}`` hook)."""

    eraser: PositionEraser
    hook: str

    def transform(self, x: Any, *, positions: Any = None) -> Any:
        return self.eraser.transform(x, hook_name=self.hook, positions=positions)


def _analyses(
    raw: BranchLatents, layers: list[int], erasers: dict[int, _AtHook | None], inter: dict[str, BranchLatents],
    early: int | None, o: dict[str, Any],
) -> dict[int, BranchAnalysis]:
    """The analysis of every layer in ``layers`` (``_analyse``), each with its layer's eraser."""
    return {layer: _analyse(raw, layer, erasers[layer], inter, early, o) for layer in layers}


def _analyse(
    raw: BranchLatents, layer: int, eraser: _AtHook | None, inter: dict[str, BranchLatents],
    early: int | None, o: dict[str, Any],
) -> BranchAnalysis:
    """The views of one layer, their UMAP and scores (+ ``path_ratio_by_group`` with two or more groups)."""
    specs = list(inter)
    views = make_views(
        raw, layer, eraser=eraser, eraser_name=f"erased ({o['eraser']}, reference)",
        crossfit=o["erase_on"] in ("branches", "both"), intervened=inter[specs[0]] if specs else None,
        intervened_name=f"intervened ({specs[0] if specs else ''})", early=early if early != layer else None,
    )
    if len(specs) > 1:  # the other intervened views, next to the first
        named = list(views.items())
        at = [n for n, _ in named].index(f"intervened ({specs[0]})") + 1
        more = [(f"intervened ({s})", inter[s].view(layer)) for s in specs[1:]]
        views = dict(named[:at] + more + named[at:])
    analysis = analyze(views, layer=layer, seed=o["seed"], n_neighbors=o["n_neighbors"], min_dist=o["min_dist"],
                       k=o["k"], n_perm=o["n_perm"], progress=o["progress"])
    analysis.rows.extend(_grouped_rows(analysis, raw, inter, layer, o))
    return analysis


def _grouped_rows(
    analysis: BranchAnalysis, raw: BranchLatents, inter: dict[str, BranchLatents], layer: int, o: dict[str, Any]
) -> list[dict[str, Any]]:
    """``path_ratio_by_group`` rows of every view and space (``pe_hooks.branching.grouped``)."""
    if raw.prompt is None or len(np.unique(raw.prompt)) < 2:
        return []
    rows: list[dict[str, Any]] = []
    for view, (x, b, p) in analysis.views.items():
        source = inter.get(view[len("intervened ("):-1], raw) if view.startswith("intervened (") else raw
        group_of = dict(zip(source.branch.tolist(), np.asarray(source.prompt).tolist()))
        g = np.array([group_of[int(v)] for v in b])
        spaces = [("original", x, True)] + ([("umap", analysis.embeddings[view], False)] if view in analysis.embeddings else [])
        for space, z, std in spaces:
            got = grouped_path_ratio(z, b, p, g, n_perm=o["n_perm"], seed=o["seed"], standardize=std)
            rows.extend({"layer": layer, "view": view, "space": space, "metric": m, "value": v} for m, v in got.items())
    return rows
