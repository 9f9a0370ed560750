"""``sweep``: how much position remains at each layer, with and without each intervention.

One pass. For every intervention that changes the model (hooks), the model runs once over the
probe sequences with its hooks attached and the residual stream captured at the requested layers
(one forward per batch feeds all layers). Conditions that leave the model alone -- the baseline and
offline erasers -- share one stream of forwards and apply their transforms to the same activations.
From that single stream, per layer:

1. **moments of every token** (``stats.LayerStats``, per fold): held-out ridge ``R^2``/RMSE are
   exact from them, and so is the geometry;
2. **a seeded, bounded sample of whole sequences** (``reservoir.Reservoir``, ``sample_seqs``
   sequences, float16): the classifier probe (``stacked``: LDA from the moments, recalibrated by a
   logistic regression on held-out scores) and the position error are scored on the sampled
   tokens of each fold with the model that never saw that fold. Offline transforms are applied to
   the sample when it is scored, so one sample serves every condition of a stream.

Folds are sequences (``seq_index % folds``): no token of a test sequence is ever in training.
A shuffled-label control (positions permuted within each sequence) runs through the same pipeline
and must sit at chance. Fitted interventions (erasers) are fitted on *other* sequences than the
probes'. Memory: ``O(layers * (folds * d^2 + sample_seqs * seq_len * d))``, independent of the
number of tokens. Under ``torch.distributed``, each rank takes every ``world``-th sequence,
statistics are all-reduced and the samples gathered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from pe_hooks.conditions import InterventionSpec
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_model
from pe_hooks.probes.linear import Shrinkage
from pe_hooks.probes.nonlinear import SWEEP_PROBES
from pe_hooks.probes.options import SweepOptions
from pe_hooks.probes.plan import plan_sweep
from pe_hooks.probes.result import SweepResult, sweep_result
from pe_hooks.probes.score import score_stream
from pe_hooks.probes.stream import run_stream


def sweep(
    model: Model,
    data: Any = None,
    interventions: Mapping[str, InterventionSpec] | Sequence[str] | None = None,
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_pre",
    seq_len: int = 64,
    n_seqs: int = 256,
    n_fit: int = 128,
    n_bins: int = 8,
    folds: int = 4,
    batch_size: int = 16,
    exempt_first: bool = True,
    alpha: float = 1e-3,
    shrinkage: Shrinkage = "auto",
    seed: int = 0,
    token_floor: bool = True,
    evaluate: bool = True,
    sample_seqs: int = 256,
    nonlinear: Sequence[str] = SWEEP_PROBES,
    nonlinear_seqs: int = 64,
    nonlinear_layers: Sequence[int] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SweepResult:
    """Per-layer position probes under each intervention.

    Args:
        data: anything ``pe_hooks.data.load_data`` takes; ``None`` = the embedded corpus. The first
            ``n_fit`` sequences fit erasers, the next ``n_seqs`` are probed.
        interventions: ``{"name": spec}`` with spec ``None`` or a name of the intervention
            language (``pe_hooks.conditions``: ``"baseline"``, ``"zero"``, ``"remove"``,
            ``"replace:shift=3"``, ``"erase"`` (LEACE), ``"erase-mean"``, ``"erase-pca"``, ...), a hook
            list, or a callable ``(model, fit_data) -> hooks``; a list of names also works.
            Interventions that do not apply to the model (a ``SchemeError``) are skipped with a warning;
            bad data while fitting an eraser (non-finite activations, too few tokens) raises ``DataError``.
        layers: layers to probe (``n_layers`` = the final residual); all by default.
        evaluate: score the classifier probe (accuracy, its shuffled control, chance), the position
            error (MAE) and the bin distance on the sample. ``False`` keeps the held-out ridge R²/RMSE
            (exact from the moments) and the geometry only.
        sample_seqs: probe sequences kept (a seeded reservoir, float16) to score the classifier
            probe on; memory is bounded by it whatever ``n_seqs``. The default keeps all 256 of the
            default probe sequences; with more sequences the scores use a uniform sample of them,
            while the LDA directions and ridge/geometry metrics use every token.
        nonlinear: non-linear probes scored beside the linear one, each with its shuffled control
            (``acc_<probe>``, ``acc_<probe>_shuffled``): ``"knn_cosine"``, ``"knn_euclidean"`` (15
            neighbours: the neighbourhood UMAP builds its graph from) and ``"mlp"`` (one hidden
            layer of 64 ReLU units, ``probes.nonlinear.mlp_predictions``; ~0.6 s per site on one
            core, ~2x a kNN). All three by default; ``()`` for none.
        nonlinear_seqs: the first this many sampled sequences (by index) feed the non-linear probes.
        nonlinear_layers: the probed layers that get the non-linear probes (the token floor always
            does); default: about 8 evenly spaced ones, the first and the final included
            (``ceil(n_layers / 8)`` apart) -- each costs ~1 CPU-second per condition.
        workers: threads that score the sites of a condition in parallel (each on one torch
            thread; the sites are independent, so the results do not depend on it); default: the
            CPU count, at most 4.
        exempt_first: leave position 0 / BOS out of the probes (its massive activations).
        shrinkage: covariance shrinkage of the probe's discriminant directions, ``"auto"``
            (concept-erasure's optimal linear shrinkage, chosen from the data per fold) or a fixed factor.
        token_floor: also probe the token embeddings alone (``W_E[token_ids]``, reported as layer -1):
            how much position the text itself gives away, the floor no eraser can go below.

    Returns:
        ``SweepResult`` (``.df``, ``.pivot()``, ``.save()``); draw it with
        ``pe_hooks.viz.plot_sweep``, write Markdown with ``pe_hooks.reports.sweep_markdown``.
    """
    check_model(model, "sweep")
    opts = SweepOptions(**{k: v for k, v in locals().items() if k not in ("model", "data", "interventions")})
    plan = plan_sweep(model, data, interventions, opts)  # every check, the data, the conditions and their streams
    rows_of: dict[str, list[dict[str, Any]]] = {}
    n_tokens_sample = 0
    for stream in tqdm(plan.streams, desc="forward groups", disable=not opts.progress):
        moments = run_stream(plan, stream)  # one pass of forwards: moments + sample
        rows_of.update(score_stream(plan, moments, stream.conditions))
        n_tokens_sample = max(n_tokens_sample, sum(len(pos) for _, pos, _ in moments.sample))
    return sweep_result(plan, rows_of, n_tokens_sample)
