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
from typing import Any

import pandas as pd
import torch

from pe_hooks.branching.analysis import BranchAnalysis, analyze
from pe_hooks.branching.generate import branches
from pe_hooks.branching.latents import DEFAULT_PROMPTS, BranchLatents
from pe_hooks.branching.separation import metrics_frame
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
            "eraser": o["eraser"], "fit_seqs": o["fit_seqs"], "intervention": o["intervention"],
            "massive": o["massive"], "n_perm": o["n_perm"],
        }

    def title(self, layer: int) -> str:
        """The figure title of ``layer``: model, layer (and whether ``auto`` chose it), setting."""
        o = self.options
        how = " (auto)" if layer in self.raw.auto_layers else ""
        return (f"{self.name}, layer {layer}{how} ({o['site']}): {len(self.prompts)} prompt(s) x {o['n_branches']} "
                f"branches x {o['max_new_tokens']} tokens, seed {o['seed']}")

    def branch_group(self) -> dict[int, int]:
        """Branch id -> prompt index (the figure's hue families)."""
        raw = self.raw
        return {int(b): int(p) for b, p in zip(raw.branch, raw.prompt if raw.prompt is not None else raw.branch * 0)}

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
                "texts": raw.texts, "intervened_texts": inter.texts if inter is not None else [], "timings_s": self.timings,
            }, indent=1))
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
    n_branches: int = 8,
    max_new_tokens: int = 128,
    layers: str | Sequence[int | str] = "auto",
    auto_layers: int = 1,
    early: int | None = None,
    site: str = "resid_pre",
    intervention: str = "remove",
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
    """Everything ``pe-hooks branches`` computes, as a ``BranchesRun`` (the command's options are
    these keywords: ``--branches`` = ``n_branches``, ``--tokens`` = ``max_new_tokens``, ``--layer`` =
    ``layers``, ``--neighbors`` = ``n_neighbors``, ``--kv-cache auto/on/off`` = ``None/True/False``).

    Args:
        model: a model name (loaded with ``load_model(model, device=, dtype=)``) or a loaded model.
        prompts: a prompt, a list, or ``None`` for ``DEFAULT_PROMPTS``.
        layers: ``"auto"`` (the layer where position is strongest in the branch latents,
            ``pe_hooks.branching.layer_choice``), layer indices, or both (``["auto", 0]``).
        early: also show the same tokens at this layer.
        intervention: the verb the intervened branches are generated under: ``zero``, ``remove``,
            ``replace:MAP`` (``pe_hooks.conditions``) or ``none``.
        eraser: method of the reference eraser (``leace``, ``mean``, ``pca``, ``quadratic``).
        erase_on: fit the erased view's eraser on the reference corpus (``fit_seqs`` sequences), on
            the branches (cross-fitted), or ``both``.
        n_neighbors, min_dist: UMAP's; ``k``: neighbours of the kNN metrics; ``n_perm``: label
            permutations of the headline scores' nulls.
        massive: flag tokens with norm > this x median (``None``: flag nothing).
        device, dtype: ``load_model``'s (a model loaded by name: float32 by default; a built model
            must already have ``dtype`` if it is given).
        name: the model's name in titles and reports (default: the name given, else the model's own).
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "prompts")}
    _check_options(options)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(model, str):
        name = name or model
    model = load_model(model, device=device, dtype=dtype)  # a built model: returned as it is, its dtype checked
    scheme = inspect(model)
    name = name or scheme.model_name
    asked = [layers] if isinstance(layers, str) else list(layers)
    explicit = [v for v in asked if not isinstance(v, str)]
    if explicit:
        scheme.check_layers(explicit)  # fail before any work
    early_layer = None if early is None else scheme.check_layers([early])[0]
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts or DEFAULT_PROMPTS)
    kw: dict[str, Any] = dict(n_branches=n_branches, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, seed=seed, site=site, massive=massive, kv_cache=kv_cache, progress=progress)
    timings["load"] = time.perf_counter() - t0
    t = time.perf_counter()
    collect: list[int | str] = list(dict.fromkeys(asked + ([early_layer] if early_layer is not None else [])))
    raw = branches(model, prompt_list, layers=collect, auto_layers=auto_layers, **kw)
    auto = any(isinstance(v, str) for v in asked)
    timings["generate + collect (+ score every layer)" if auto else "generate + collect"] = time.perf_counter() - t
    chosen = sorted(set(raw.auto_layers) | set(scheme.check_layers(explicit) if explicit else []))
    reference = _reference_eraser(model, raw, chosen, options, timings) if erase_on in ("reference", "both") else None
    inter = None
    hooks = intervention_hooks(model, intervention, raw.prompt_len + max_new_tokens, seed=seed)
    if hooks is not None:
        t = time.perf_counter()
        inter = branches(model, prompt_list, hooks=hooks, layers=chosen, **kw)
        timings["generate + collect (intervened)"] = time.perf_counter() - t
    t = time.perf_counter()
    analyses = {layer: _analyse(raw, layer, reference, inter, early_layer, options) for layer in chosen}
    timings["UMAP + metrics"] = time.perf_counter() - t
    return BranchesRun(name, options, prompt_list, raw, inter, analyses, timings)


def _check_options(o: dict[str, Any]) -> None:
    """The options ``branches`` and ``fit_eraser`` do not check themselves, checked before any work."""
    _hook_intervention(o["intervention"])
    if o["erase_on"] not in ERASE_ON:
        raise ArgumentError(f"erase_on must be one of {ERASE_ON}, got {o['erase_on']!r}")
    check_int(o["fit_seqs"], "fit_seqs", minimum=1)
    check_int(o["n_neighbors"], "n_neighbors", minimum=2, fix="UMAP's n_neighbors (15 by default)")
    check_number(o["min_dist"], "min_dist", minimum=0.0, maximum=1.0, fix="UMAP's min_dist (0.1 by default)")
    check_int(o["k"], "k", minimum=1, fix="neighbours of the kNN metrics (10 by default)")
    check_int(o["n_perm"], "n_perm", minimum=10, fix="label permutations of the nulls (100 by default)")


def _reference_eraser(
    model: Model, raw: BranchLatents, layers: list[int], o: dict[str, Any], timings: dict[str, float]
) -> PositionEraser:
    """The eraser of the ``erased (..., reference)`` view, fitted on ``fit_seqs`` sequences of the
    reference corpus at least as long as the branches (up to the context)."""
    t = time.perf_counter()
    scheme = inspect(model)
    seq_len = min(max(64, raw.prompt_len + o["max_new_tokens"]), scheme.n_ctx)
    ref = load_data(model, None, seq_len=seq_len, n_seqs=o["fit_seqs"], seed=o["seed"])
    eraser = fit_eraser(model, ref, method=o["eraser"], site=o["site"], layers=layers, seq_len=seq_len,
                        sequential=False)  # applied offline to each layer's latents
    timings["fit eraser (reference)"] = time.perf_counter() - t
    return eraser


def _analyse(
    raw: BranchLatents, layer: int, eraser: PositionEraser | None, inter: BranchLatents | None, early: int | None,
    o: dict[str, Any],
) -> BranchAnalysis:
    """The views of one layer, their UMAP and scores."""
    views = make_views(
        raw, layer, eraser=eraser, eraser_name=f"erased ({o['eraser']}, reference)",
        crossfit=o["erase_on"] in ("branches", "both"), intervened=inter,
        intervened_name=f"intervened ({o['intervention']})", early=early if early != layer else None,
    )
    return analyze(views, layer=layer, seed=o["seed"], n_neighbors=o["n_neighbors"], min_dist=o["min_dist"],
                   k=o["k"], n_perm=o["n_perm"], progress=o["progress"])
