"""The plan of a sweep: which sites are probed, on which sequences, and which streams of forwards
serve which conditions (``plan_sweep``), made once before any forward runs.

A *condition* is one named intervention of the sweep (``pe_hooks.conditions``). Conditions that leave
the model alone (the baseline, offline erasers) share one *stream* of forwards and apply their
transforms to the same captured activations; a condition with hooks changes the model and gets a
stream of its own. In a stream, an offline affine eraser (LEACE, PCA) takes its moments from the
raw ones (``LayerStats.erased``, exact) instead of streaming its own: it is *derived*.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from pe_hooks.conditions import InterventionSpec, Resolved, parse_intervention, resolve_intervention
from pe_hooks.core.errors import ArgumentError, DataError, SchemeError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_indices
from pe_hooks.data import TokenData, load_data
from pe_hooks.probes.options import SweepOptions
from pe_hooks.sites.inspect import inspect
from pe_hooks.sites.scheme import PositionalScheme


@dataclass(frozen=True)
class Site:
    """A probed site: a residual hook point at ``layer`` (``n_layers`` = the final residual), or the
    token floor (``hook=None``, reported as layer -1): the token embeddings ``W_E[tokens]`` alone."""

    layer: int
    hook: str | None


FLOOR = Site(-1, None)


@dataclass
class Condition:
    """One named intervention of the sweep, resolved, with the sites it is probed at."""

    name: str
    resolved: Resolved
    sites: list[Site]
    derived: bool = False  # moments derived from the stream's raw ones (an offline affine eraser)


@dataclass
class Stream:
    """The conditions one stream of forwards serves, under ``hooks``.

    ``raw_from``: the streamed condition whose (untransformed) moments the derived conditions take;
    ``None`` with derived conditions: the stream accumulates raw moments of ``raw_sites`` for them.
    ``floor``: the stream that probes the token floor (its sample holds the token embeddings).
    """

    hooks: HookList
    conditions: list[Condition]
    raw_from: Condition | None = None
    raw_sites: list[Site] = field(default_factory=list)
    floor: bool = False

    @property
    def label(self) -> str:
        return " + ".join(c.name for c in self.conditions)

    @property
    def streamed(self) -> list[Condition]:
        return [c for c in self.conditions if not c.derived]

    @property
    def derived(self) -> list[Condition]:
        return [c for c in self.conditions if c.derived]


@dataclass
class SweepPlan:
    """Everything a sweep runs, decided before its first forward."""

    model: Model
    opts: SweepOptions
    scheme: PositionalScheme
    interventions: dict[str, InterventionSpec]
    sites: list[Site]  # in layer order, the token floor first
    nonlinear_layers: set[int]
    w_e: torch.Tensor | None  # the token embeddings of the token floor
    probe_data: TokenData
    fit_data: TokenData | None
    mine: TokenData  # this rank's probe sequences
    rank: int
    world: int
    distributed: bool
    t_max: int
    streams: list[Stream]
    skipped: dict[str, str]
    data_label: str

    @property
    def hook_names(self) -> list[str]:
        return [s.hook for s in self.sites if s.hook is not None]


def plan_sweep(
    model: Model, data: Any, interventions: Mapping[str, InterventionSpec] | Sequence[str] | None, opts: SweepOptions
) -> SweepPlan:
    """The plan of ``sweep(model, data, interventions, **options)`` (see ``sweep``)."""
    scheme = inspect(model)
    specs = _interventions(interventions)
    sites, nl_layers = _sites(scheme, opts)
    w_e = model.W_E.detach().float().cpu() if opts.token_floor else None
    if w_e is not None:
        sites = [FLOOR, *sites]
    needs_fit = any((isinstance(s, str) and s.startswith("erase")) or callable(s) for s in specs.values())
    total = opts.n_seqs + (opts.n_fit if needs_fit else 0)
    all_data = load_data(model, data, seq_len=opts.seq_len, n_seqs=total, seed=opts.seed)
    # the probe sequences come first, so they are the same whether or not erasers are fitted
    probe_data = all_data.subset(list(range(opts.n_seqs))) if needs_fit else all_data
    fit_data = all_data.subset(list(range(opts.n_seqs, total))) if needs_fit else None
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    t_min, t_max = opts.t_min, probe_data.seq_len - 1
    if opts.n_bins > t_max - t_min + 1:
        raise ArgumentError(
            f"n_bins={opts.n_bins} is more than the {t_max - t_min + 1} probed positions of {probe_data.seq_len}-token "
            f"sequences{' (position 0 exempt)' if opts.exempt_first else ''}: some bins would stay empty; "
            f"use n_bins <= {t_max - t_min + 1} or longer sequences"
        )
    hook_names = [s.hook for s in sites if s.hook is not None]
    resolved, skipped = {}, {}
    for name, spec in specs.items():
        try:
            resolved[name] = resolve_intervention(name, spec, model, fit_data, hook_names,
                                                  positions=probe_data.seq_len, seed=opts.seed)
        except SchemeError as exc:  # does not apply to this model; bad data (a DataError) stops the sweep
            warnings.warn(f"sweep: skipping '{name}': {exc}", stacklevel=3)
            skipped[name] = str(exc)
    streams = _streams(resolved, sites, t_min)
    return SweepPlan(
        model, opts, scheme, specs, sites, nl_layers, w_e, probe_data, fit_data,
        probe_data.subset(list(range(rank, len(probe_data), world))), rank, world, distributed, t_max, streams,
        skipped,
        "embedded stdlib docstrings" if data is None else str(type(data).__name__),
    )


def _interventions(interventions: Mapping[str, InterventionSpec] | Sequence[str] | None) -> dict[str, InterventionSpec]:
    """``{name: spec}`` of a sweep's interventions, their names checked before any work."""
    if interventions is None:
        interventions = {"baseline": None}
    if isinstance(interventions, str):  # one name, not its characters
        interventions = [interventions]
    specs: dict[str, InterventionSpec] = (
        dict(interventions) if isinstance(interventions, Mapping) else {name: name for name in interventions}
    )
    if not specs:
        raise DataError("no interventions to run; pass e.g. ['baseline', 'zero'] (or None for the baseline)")
    for spec in specs.values():
        if isinstance(spec, str):
            parse_intervention(spec)  # a bad name or value fails before any work
    return specs


def _sites(scheme: PositionalScheme, opts: SweepOptions) -> tuple[list[Site], set[int]]:
    """The probed residual sites in layer order, and the layers that get the non-linear probes."""
    n = scheme.n_layers
    lay = list(range(n + 1)) if opts.layers is None else check_indices(opts.layers, "layers", n + 1, what="probe layers")
    sites = [Site(la, scheme.resid_hook(la, opts.site) if la < n else scheme.resid_hook(la)) for la in lay]
    if opts.nonlinear_layers is None:
        step = max(1, math.ceil(n / 8))
        nl_layers = {la for la in lay if la % step == 0 or la == n} | {lay[0], lay[-1], -1}
    else:
        nl_layers = set(check_indices(opts.nonlinear_layers, "nonlinear_layers", n + 1, what="probe layers")) | {-1}
        if not nl_layers - {-1} <= set(lay):
            raise ArgumentError(f"nonlinear_layers {sorted(nl_layers - {-1} - set(lay))} are not among the probed layers "
                                f"{lay}; give a subset of layers=")
    return sites, nl_layers


def _streams(resolved: dict[str, Resolved], sites: list[Site], t_min: int) -> list[Stream]:
    """Conditions without hooks share the first stream; each condition with hooks gets its own. The
    token floor depends on the tokens only: it is probed once, by the first stream's first condition."""
    hook_sites = [s for s in sites if s.hook is not None]
    shared = [name for name, r in resolved.items() if len(r.hooks) == 0]
    groups = ([shared] if shared else []) + [[name] for name, r in resolved.items() if len(r.hooks) > 0]
    streams = []
    for i, group in enumerate(groups):
        conditions = [Condition(name, resolved[name], sites if i == 0 and j == 0 else hook_sites)
                      for j, name in enumerate(group)]
        streams.append(_derive(Stream(resolved[group[0]].hooks, conditions, floor=i == 0 and FLOOR in sites), t_min))
    return streams


def _derive(stream: Stream, t_min: int) -> Stream:
    """Mark the offline affine erasers whose moments can be derived from the raw ones (position 0
    must be out of the moments: the eraser leaves it as it is), and say where the raw ones come from."""
    for c in stream.conditions:
        affine = c.resolved.affine
        c.derived = affine is not None and t_min >= 1 and all(affine(s.hook) is not None for s in c.sites)  # type: ignore[arg-type]
    needed = list(dict.fromkeys(s for c in stream.derived for s in c.sites))
    stream.raw_from = next((c for c in stream.streamed if c.resolved.transform is None and set(c.sites) >= set(needed)),
                           None)
    if stream.derived and stream.raw_from is None:
        stream.raw_sites = needed
    return stream
