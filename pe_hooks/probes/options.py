"""``SweepOptions``: every option of ``sweep``, checked once, in one place, and recorded as given
(``SweepResult.meta["options"]``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from pe_hooks.core.errors import ArgumentError
from pe_hooks.core.validate import check_bool, check_int, check_number
from pe_hooks.probes.linear import Shrinkage
from pe_hooks.probes.nonlinear import SWEEP_PROBES


@dataclass
class SweepOptions:
    """The options of a sweep (see ``sweep`` for what each does); invalid values raise
    ``ArgumentError`` naming the fix when the object is made.

    The data-dependent checks (layers and site against the model, ``n_bins`` against the probed
    positions of the data) are made when the sweep is planned (``probes.plan.plan_sweep``).
    """

    layers: Sequence[int] | None = None
    site: str = "resid_pre"
    seq_len: int = 64
    n_seqs: int = 256
    n_fit: int = 128
    n_bins: int = 8
    folds: int = 4
    batch_size: int = 16
    exempt_first: bool = True
    alpha: float = 1e-3
    shrinkage: Shrinkage = "auto"
    seed: int = 0
    token_floor: bool = True
    evaluate: bool = True
    sample_seqs: int = 256
    nonlinear: Sequence[str] = SWEEP_PROBES
    nonlinear_seqs: int = 64
    nonlinear_layers: Sequence[int] | None = None
    workers: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check_int(self.seq_len, "seq_len", minimum=3)
        check_int(self.n_seqs, "n_seqs", minimum=1, fix="probe at least `folds` sequences")
        check_int(self.n_fit, "n_fit", minimum=1)
        check_int(self.folds, "folds", minimum=2, fix="the probes are scored on held-out folds")
        check_int(self.n_bins, "n_bins", minimum=2, fix="accuracy needs at least 2 position bins")
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.sample_seqs, "sample_seqs", minimum=self.folds, fix="the sample must hold a sequence of every fold")
        check_int(self.nonlinear_seqs, "nonlinear_seqs", minimum=self.folds,
                  fix="the non-linear probes need a sequence of every fold")
        if isinstance(self.nonlinear, str) or any(p not in SWEEP_PROBES for p in self.nonlinear):
            raise ArgumentError(f"nonlinear={self.nonlinear!r}: give a list of probes from {SWEEP_PROBES}, or () for none")
        self.nonlinear = tuple(self.nonlinear)
        check_int(self.seed, "seed")
        if self.workers is not None:
            check_int(self.workers, "workers", minimum=1,
                      fix="workers is the number of scoring threads (None: the CPU count, at most 4)")
        check_number(self.alpha, "alpha", positive=True, fix="alpha is the ridge penalty (1e-3 by default)")
        if self.shrinkage != "auto":
            fix = "pass shrinkage='auto' (default) or a fixed factor in [0, 1]"
            if isinstance(self.shrinkage, str):
                raise ArgumentError(f"shrinkage must be 'auto' or a number in [0, 1], got {self.shrinkage!r}; {fix}")
            check_number(self.shrinkage, "shrinkage", minimum=0.0, maximum=1.0, fix=fix)
        for name in ("exempt_first", "token_floor", "evaluate"):
            check_bool(getattr(self, name), name)
        if self.n_seqs < self.folds:
            raise ArgumentError(
                f"n_seqs={self.n_seqs} sequences cannot fill folds={self.folds} folds (each needs at least one held-out "
                f"sequence); use n_seqs >= {self.folds} (256 by default) or fewer folds"
            )
        for name in ("layers", "nonlinear_layers"):  # recorded as plain lists (checked against the model later)
            value = getattr(self, name)
            if isinstance(value, (tuple, range)):
                setattr(self, name, list(value))

    @property
    def n_workers(self) -> int:
        """Threads that score the sites of a condition: ``workers``, or the CPU count (at most 4)."""
        return self.workers if self.workers is not None else max(1, min(4, os.cpu_count() or 1))

    @property
    def t_min(self) -> int:
        """The first probed position (position 0 / BOS is exempt with ``exempt_first``)."""
        return 1 if self.exempt_first else 0
