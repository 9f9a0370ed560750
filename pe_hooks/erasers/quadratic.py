"""Quadratic position erasure: class-conditional optimal transport with position bins as classes.

Built on concept-erasure's ``QuadraticFitter`` / ``QuadraticEraser`` (Belrose et al., 2023), not a
rewrite of them.

What it does
------------
Positions ``1..T`` are cut into ``n_bins`` equal-width bins ``k = floor((t - 1) * n_bins / T)``
(position 0 / BOS is never fitted and is left unchanged when applied: its massive activations would
dominate every statistic). For each bin the fitter streams the class mean ``mu_k`` and the
class covariance ``S_k`` (Welford, float64), shrunk towards ``tr(S_k)/d * I`` with concept-erasure's
optimal linear shrinkage (Random-Matrix-Theory coefficients; this is what keeps the maps defined
when a bin has fewer tokens than dimensions). It then computes the 2-Wasserstein barycenter ``B`` of
the Gaussians ``N(0, S_k)`` (weighted by the bin counts; Alvarez-Esteban fixed-point iteration) and
the optimal-transport map of each bin onto it,
``A_k = S_k^-1/2 (S_k^1/2 B S_k^1/2)^1/2 S_k^-1/2`` (symmetric p.s.d., ``A_k S_k A_k = B``).
A token ``x`` at a position in bin ``k`` becomes::

    x' = A_k (x - mu_k) + m,        m = mean_k mu_k  (unweighted mean of the bin means)

What is equalised (the guarantee)
---------------------------------
On the fitting data, every bin has the same mean ``m`` and the same (shrunk) covariance ``B``
afterwards. Hence ``E[f(x') | bin]`` is the same for every bin for every polynomial ``f`` of degree
<= 2: no linear probe, and no linear probe on quadratic features ``x x^T`` (a "quadratic" probe, e.g.
QDA's discriminant), can predict the bin better than a constant *in expectation*. If the
class-conditional distributions are Gaussian, they become identical, so *no* probe can. Among all
maps achieving this, each ``A_k`` moves the tokens of its bin the least in expected squared distance
(it is the Gaussian optimal transport map).

What it does not guarantee
--------------------------
- Moments beyond the second (skew, heavy tails, multi-modality, norms of non-Gaussian clusters) are
  untouched: kNN or MLP probes can still decode position from them.
- Position *within* a bin is not a class: a probe of finer position than the bins is only
  limited to the extent the within-bin structure was removed along with the between-bin one.
- Out of sample the guarantee holds only up to estimation error. The subtracted ``mu_k`` and the
  maps ``A_k`` are estimated from a finite sample, and their errors are *the same for every new
  sequence*, so on held-out sequences they can themselves become a positional signature (the
  trap REFERENCE.md measures for per-position means). Fit on many tokens per bin (many more than
  ``d``), use few bins, and always score on held-out sequences. Measured on SmolLM2-135M
  (``benchmarks/results/nonlinear-smollm2*.md``, d=576, 8 bins): with ~1500 fit tokens per bin
  (192 sequences) the quadratic eraser made position MORE decodable by an MLP than in the raw
  states (layer 2: 0.29 raw -> 0.33); with ~3000 per bin (384 sequences) it sat near LEACE.
  ``pool`` (shrink bin covariances towards the pooled one) trades the covariance guarantee for
  less of this noise.
- With shrinkage on (default), equalised covariances are the shrunk estimates, not the raw
  sample covariances; the raw ones agree only to the extent shrinkage was small.

Positions at apply time
-----------------------
The eraser is class-conditional: ``apply(x, positions)`` NEEDS the position of every token (it
picks ``A_k`` and ``mu_k`` by bin). In a model the positions are known (the pe-hooks position
source records them); positions beyond the fitted ``max_position`` raise (refit on longer sequences).

Interface
---------
``QuadraticSiteFitter`` mirrors ``pe_hooks.erasers.methods.SiteFitter`` (``update(x, t)`` on
already-masked tokens, ``n_tokens``, ``finish()``), and ``finish()`` returns a ``QuadraticMap``
with the ``SiteMap`` surface (``method``, ``rank``, ``apply(x, positions)``) plus
``state_dict()`` / ``from_state_dict()`` of plain tensors for safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from concept_erasure import QuadraticEraser, QuadraticFitter

from pe_hooks.core.errors import DataError
from pe_hooks.data import labels

METHOD = "quadratic"


def position_bins(positions: torch.Tensor, *, max_position: int, n_bins: int) -> torch.Tensor:
    """Bin index ``floor((t - 1) * n_bins / max_position)`` of positions ``1..max_position``; -1 at 0."""
    t = labels.check_token_positions(positions, upper=max_position,
                              fix="refit the quadratic eraser on sequences at least that long")
    b = labels.position_bins(t, n_bins, 1, max_position)
    return torch.where(t == 0, torch.full_like(b, -1), b)


def _as_tokens(x: Any, t: Any, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.as_tensor(x)
    if t is None:
        raise DataError(
            "the quadratic eraser is class-conditional: it needs the position of every token "
            "(pass positions=, same leading shape as x)"
        )
    if xt.shape[-1] != d:
        raise DataError(f"activations have d={xt.shape[-1]} but the eraser was fitted on d={d}")
    tt = labels.check_token_positions(t, tuple(xt.shape[:-1]))
    return xt.reshape(-1, d), tt.reshape(-1)


@dataclass
class QuadraticMap:
    """Fitted quadratic eraser of one site: concept-erasure's own ``QuadraticEraser`` (``x -> A_k
    (x - mu_k) + m`` for a token in bin ``k``) applied to the tokens of each bin, position 0 passed
    through; ``counts`` are the fit's tokens per bin."""

    eraser: QuadraticEraser
    max_position: int
    counts: torch.Tensor  # [K] tokens per bin in the fit
    method: str = METHOD
    _rank: int | None = field(default=None, repr=False, compare=False)

    @property
    def ot_maps(self) -> torch.Tensor:
        """``[K, d, d]`` the transport map ``A_k`` of each bin."""
        return self.eraser.ot_maps

    @property
    def n_bins(self) -> int:
        return int(self.eraser.class_means.shape[0])

    @property
    def d(self) -> int:
        return int(self.eraser.class_means.shape[1])

    @property
    def offsets(self) -> None:  # SiteMap surface: no per-position offset table
        return None

    def affine(self) -> None:
        """Not one affine map (one per bin): the sweep streams its moments."""
        return None

    @property
    def rank(self) -> int:
        """Number of directions the map edits: rank of ``[A_k - I | mu_k - m]`` over all bins."""
        if self._rank is None:
            er = self.eraser
            eye = torch.eye(self.d, dtype=torch.float64)
            edits = [(a.double() - eye) for a in er.ot_maps]
            edits.append((er.class_means.double() - er.global_mean.double()).T)
            s = torch.linalg.svdvals(torch.cat(edits, dim=1))
            tol = float(s.max()) * self.d * 1e-6 if s.numel() else 0.0
            self._rank = int((s > tol).sum())
        return self._rank

    def apply(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Erase ``x`` ``[..., d]``; ``positions`` ``[...]`` are REQUIRED (class-conditional).

        Tokens at position 0 are returned unchanged.
        """
        xf, t = _as_tokens(x, positions, self.d)
        if not bool(torch.isfinite(xf).all()):
            raise DataError("activations contain NaN or inf")
        b = position_bins(t.to(xf.device), max_position=self.max_position, n_bins=self.n_bins)
        xs = xf.to(torch.float32)
        out = xs.clone()
        fitted = b >= 0
        if bool(fitted.any()):
            out[fitted] = self._eraser_on(xs.device)(xs[fitted], b[fitted])
        return out.reshape(torch.as_tensor(x).shape).to(torch.as_tensor(x).dtype)

    def _eraser_on(self, device: torch.device) -> QuadraticEraser:
        er = self.eraser
        if er.ot_maps.device == device and er.ot_maps.dtype == torch.float32:
            return er
        return QuadraticEraser(*(t.to(device, torch.float32) for t in (er.class_means, er.global_mean, er.ot_maps)))

    # ------------------------------------------------------------------ io
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain contiguous tensors (safetensors-ready); ``from_state_dict`` inverts it exactly."""
        er = self.eraser
        return {
            "class_means": er.class_means.contiguous(),
            "global_mean": er.global_mean.contiguous(),
            "ot_maps": er.ot_maps.contiguous(),
            "counts": self.counts.contiguous(),
            "max_position": torch.tensor([self.max_position], dtype=torch.int64),
        }

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], method: str = METHOD) -> QuadraticMap:
        missing = {"class_means", "global_mean", "ot_maps", "counts", "max_position"} - set(sd)
        if missing:
            raise DataError(f"not a quadratic eraser state dict: missing {sorted(missing)}")
        return cls(QuadraticEraser(sd["class_means"], sd["global_mean"], sd["ot_maps"]), int(sd["max_position"][0]),
                   sd["counts"])


class _PooledQuadraticFitter(QuadraticFitter):
    """``QuadraticFitter`` whose bin covariances are shrunk towards their pooled average:
    ``S_k <- (1 - pool) S_k + pool * sum_j (n_j / n) S_j`` (after concept-erasure's own shrinkage).
    ``pool = 1`` makes every map the identity (bin-mean subtraction only)."""

    def __init__(self, *args: Any, pool: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = float(pool)

    @property
    def sigma_xx(self) -> torch.Tensor:
        s: torch.Tensor = super().sigma_xx
        if self.pool <= 0:
            return s
        w = (self.n / self.n.sum()).to(s.dtype).view(-1, 1, 1)
        return (1 - self.pool) * s + self.pool * (s * w).sum(0, keepdim=True)


class QuadraticSiteFitter:
    """Streams the per-bin means and covariances of one site (``QuadraticFitter``, float64).

    Args:
        d: width of the activations.
        max_position: the largest position fitted (``seq_len - 1``); bins cover ``1..max_position``.
        n_bins: number of equal-width position bins (the classes).
        shrinkage: concept-erasure's optimal linear shrinkage of each bin covariance (default on;
            off only when every bin has many more tokens than ``d``).
        pool: shrink each bin covariance towards the pooled within-bin covariance by this fraction
            (0 = off, 1 = maps are the identity). Trades the covariance guarantee for less
            out-of-sample estimation noise in the maps (see the module docstring).
        min_per_bin: fewest tokens a bin needs at ``finish()`` (default ``max(2, d // 4)``: below
            that the covariance is mostly shrinkage and the map mostly estimation noise).
        **_ignored: the other ``SiteFitter`` options (``features``, ``n_freqs``, ``k``, ``var``,
            ``denoise``), accepted so the two fitters are constructed the same way.
    """

    def __init__(
        self, d: int, *, max_position: int, n_bins: int = 8, shrinkage: bool = True,
        pool: float = 0.0, min_per_bin: int | None = None, **_ignored: Any,
    ) -> None:
        if max_position < 1:
            raise DataError("max_position must be >= 1 (positions 1..max_position are fitted)")
        if not 2 <= n_bins <= max_position:
            raise DataError(f"n_bins must be in 2..{max_position} (max_position), got {n_bins}")
        self.method, self.d, self.T, self.n_bins = METHOD, d, max_position, n_bins
        self.min_per_bin = max(2, d // 4) if min_per_bin is None else max(2, int(min_per_bin))
        self.n_tokens = 0
        if not 0.0 <= pool <= 1.0:
            raise DataError(f"pool must be in [0, 1], got {pool}")
        self.fitter = _PooledQuadraticFitter(d, n_bins, dtype=torch.float64, shrinkage=shrinkage, pool=pool)

    def update(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """Add tokens ``x`` ``[n, d]`` at positions ``t`` ``[n]``; tokens at position 0 are skipped."""
        xt, tt = _as_tokens(x, t, self.d)
        if xt.shape[0] == 0:
            return
        if not bool(torch.isfinite(xt).all()):
            raise DataError("activations contain NaN or inf: check the model dtype / the data")
        b = position_bins(tt, max_position=self.T, n_bins=self.n_bins)
        keep = b >= 0
        if not bool(keep.any()):
            return
        self.fitter.update(xt[keep].double(), b[keep])
        self.n_tokens += int(keep.sum())

    @property
    def counts(self) -> torch.Tensor:
        return self.fitter.n.to(torch.int64)

    def finish(self) -> QuadraticMap:
        if self.n_tokens == 0:
            raise DataError("no tokens reached the quadratic eraser: check the data, the mask and positions")
        counts = self.counts
        low = [(k, int(c)) for k, c in enumerate(counts.tolist()) if c < self.min_per_bin]
        if low:
            fewer = [f"fewer bins (n_bins < {self.n_bins})"] if self.n_bins > 2 else []  # 2 is the fewest there are
            raise DataError(
                f"position bins {low} (bin, tokens) have fewer than {self.min_per_bin} tokens, too few to "
                f"estimate a {self.d}x{self.d} covariance: use {', '.join(fewer + ['more or longer sequences (n_seqs=, seq_len=)'])}, "
                "or a lower min_per_bin (Quadratic(min_per_bin=...))"
            )
        er = self.fitter.eraser
        return QuadraticMap(
            QuadraticEraser(er.class_means.float(), er.global_mean.float(), er.ot_maps.float()), self.T, counts.clone()
        )


def fit_quadratic(
    x: Any, positions: Any, *, n_bins: int = 8, max_position: int | None = None, shrinkage: bool = True,
    pool: float = 0.0, min_per_bin: int | None = None, batch_size: int = 65536,
) -> QuadraticMap:
    """Fit a ``QuadraticMap`` on arrays ``x`` ``[..., d]`` with integer ``positions`` ``[...]``."""
    xt = torch.as_tensor(x)
    if xt.ndim < 2 or xt.numel() == 0:
        raise DataError(f"x must be a non-empty [..., d] array, got shape {tuple(xt.shape)}")
    xf, tt = _as_tokens(xt, positions, int(xt.shape[-1]))
    T = int(tt.max()) if max_position is None else max_position
    f = QuadraticSiteFitter(int(xt.shape[-1]), max_position=T, n_bins=n_bins, shrinkage=shrinkage, pool=pool,
                            min_per_bin=min_per_bin)
    for i in range(0, xf.shape[0], batch_size):
        f.update(xf[i:i + batch_size], tt[i:i + batch_size])
    return f.finish()
