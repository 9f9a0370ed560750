"""Run one stream of a sweep plan: one pass of forwards over this rank's probe sequences, the
moments of every token (``LayerStats``, per fold) of each streamed condition at each of its sites,
and a seeded, bounded sample of whole sequences of the raw activations (``Reservoir``); the moments of
the derived conditions then come from the raw ones (``LayerStats.erased``, exact)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pe_hooks.data import stream_activations
from pe_hooks.data.labels import position_bins, shuffle_within_sequences
from pe_hooks.data.stream import ActivationBatch
from pe_hooks.probes.plan import FLOOR, Condition, Site, Stream, SweepPlan
from pe_hooks.probes.reservoir import Reservoir
from pe_hooks.probes.stats import LayerStats

#: ``(seq_id, positions, {site: activations})`` of one sampled sequence
SampledRow = tuple[int, torch.Tensor, dict[Site, torch.Tensor]]


@dataclass
class StreamMoments:
    """What a stream measured: ``stats[condition][site]`` (every condition of the stream) and the
    sampled sequences of every rank, by sequence id (empty when the sweep does not evaluate)."""

    stats: dict[str, dict[Site, LayerStats]]
    sample: list[SampledRow]


@dataclass
class _Tokens:
    """One batch's probed tokens: the activations by site, the ``keep`` mask of probed tokens and, for
    those, their positions, shuffled-control positions, folds and both sets of bins."""

    acts: dict[Site, torch.Tensor]
    batch: ActivationBatch
    keep: torch.Tensor
    y: torch.Tensor
    y_shuffled: torch.Tensor
    fold: torch.Tensor
    c: torch.Tensor
    c_shuffled: torch.Tensor


def run_stream(plan: SweepPlan, stream: Stream) -> StreamMoments:
    """One pass of forwards under ``stream.hooks``: the moments and the sample of the module docstring."""
    o = plan.opts
    d, n_positions = plan.scheme.d_model, plan.t_max + 1
    streamed: list[tuple[Condition | None, list[Site]]] = [(c, c.sites) for c in stream.streamed]
    if stream.raw_sites:
        streamed.append((None, stream.raw_sites))  # raw moments, only to derive the derived conditions'
    stats = [{s: LayerStats.zeros(o.folds, d, o.n_bins, n_positions) for s in sites} for _, sites in streamed]
    sample = Reservoir[Site](o.sample_seqs, seed=o.seed, dtype=torch.float16) if o.evaluate else None
    for t in _batches(plan, stream):
        for (cond, sites), st in zip(streamed, stats):
            acts = t.acts if cond is None else _condition_acts(cond, t)
            for s in sites:
                st[s].update(acts[s][t.keep], t.fold, t.y, t.c, t.y_shuffled, t.c_shuffled)
        if sample is not None:  # the raw stream; each condition's transform is applied when scoring
            kept = t.acts if stream.floor else {s: a for s, a in t.acts.items() if s is not FLOOR}
            sample.add(kept, t.batch.positions, seq_ids=(t.batch.index * plan.world + plan.rank).tolist(), mask=t.keep)
    rows = _gather(sample, plan.distributed) if sample is not None else []
    for st in stats:
        for layer_stats in st.values():
            layer_stats.all_reduce()
    out = {cond.name: st for (cond, _), st in zip(streamed, stats) if cond is not None}
    raw = out[stream.raw_from.name] if stream.raw_from is not None else stats[-1]
    for cond in stream.derived:
        affine = cond.resolved.affine
        assert affine is not None  # derived conditions are affine (plan._derive)
        out[cond.name] = {s: raw[s].erased(*affine(s.hook)) for s in cond.sites}  # type: ignore[arg-type, misc]
    return StreamMoments({c.name: out[c.name] for c in stream.conditions}, rows)


def _batches(plan: SweepPlan, stream: Stream) -> Iterator[_Tokens]:
    """The probed tokens of every batch of this rank's probe sequences, forwarded under the stream's hooks."""
    o, t_min = plan.opts, plan.opts.t_min
    hook_sites = [s for s in plan.sites if s.hook is not None]
    batches = stream_activations(plan.model, plan.mine, plan.hook_names, batch_size=o.batch_size, hooks=stream.hooks,
                                 progress=o.progress, desc=stream.label)
    for batch in batches:
        seq_index = batch.index * plan.world + plan.rank
        keep = batch.mask.bool() & (batch.positions >= t_min)
        shuffled = shuffle_within_sequences(batch.positions, keep, seq_index, o.seed)
        fold = (seq_index % o.folds)[:, None].expand_as(batch.positions)
        acts = {s: batch.acts[s.hook] for s in hook_sites}  # type: ignore[index]
        if plan.w_e is not None:  # the token floor: once per batch, shared by every condition
            acts[FLOOR] = plan.w_e[batch.tokens]
        y, y_shuffled = batch.positions[keep], shuffled[keep]
        yield _Tokens(acts, batch, keep, y, y_shuffled, fold[keep], position_bins(y, o.n_bins, t_min, plan.t_max),
                      position_bins(y_shuffled, o.n_bins, t_min, plan.t_max))


def _condition_acts(cond: Condition, t: _Tokens) -> dict[Site, torch.Tensor]:
    """A condition's activations of a batch at its sites: its offline transform applied (the token
    floor depends on the tokens only and is never transformed)."""
    transform = cond.resolved.transform
    if transform is None:
        return t.acts
    return {s: t.acts[s] if s.hook is None else transform(s.hook, t.acts[s], t.batch.positions) for s in cond.sites}


def _gather(res: Reservoir[Site], distributed: bool) -> list[SampledRow]:
    """``(seq_id, positions, {site: acts})`` of every sampled sequence (of every rank), by id."""
    rows = [(i, res.positions_of(s), res.row(s)) for s, i in enumerate(res.seq_ids)]
    if distributed:
        parts: list[list[SampledRow]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(parts, rows)
        rows = [r for part in parts for r in part]
    return sorted(rows, key=lambda r: r[0])
