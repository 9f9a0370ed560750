"""Erasure methods: sufficient statistics that stream, and the affine map they fit.

Every method fits, per site, an affine map ``x -> x - (x - mu) @ R.T @ L.T`` (``L``, ``R`` are
``[d, r]``), optionally plus a position-dependent offset (``"mean"``). Statistics are updated batch
by batch; memory does not grow with the number of tokens.

- ``"leace"``: concept-erasure's ``LeaceFitter`` on position features (``features.py``): the
  least-squares-minimal affine edit after which no linear classifier predicts the features better
  than a constant (Belrose et al., 2023).
- ``"mean"``: per-position mean subtraction, ``x -> x - (m_t - m)`` (Song & Zhong's
  ``h = mean + pos_t + ctx + resid``; LEACE's oracle eraser with one-hot labels). Finite-sample means
  carry estimation noise that is *the same for every new sequence*, so raw means inject a
  positional signature out of sample (REFERENCE.md: probe 0.296 -> 0.507 at SmolLM2 layer 1).
  Smoothing does not help (a smooth noise curve is still a perfect position code). With
  ``denoise=True`` (default) the offset matrix ``D[t] = m_t - m`` is scaled to unit noise
  (rows by ``sqrt(n_t)``, columns by the within-position standard deviation), and only singular
  components above the Marchenko-Pastur noise edge ``sqrt(P) + sqrt(d)`` (x1.1) are kept: pure
  estimation noise is dropped, a real low-rank positional signal survives. ``denoise=False`` keeps
  raw means (to reproduce the trap).
- ``"quadratic"``: concept-erasure's ``QuadraticFitter`` with position bins as classes
  (``quadratic.py``): equal class means *and* covariances; needs positions at apply time.
- ``"pca"``: project out the top-``k`` principal directions of the centred per-position means
  (``k`` given, or the fewest explaining ``var`` of their variance); no positions needed at apply time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from concept_erasure import LeaceFitter

from pe_hooks.core.errors import DataError
from pe_hooks.data.labels import check_token_positions
from pe_hooks.erasers.features import check_concept_labels, position_features
from pe_hooks.erasers.quadratic import QuadraticMap, QuadraticSiteFitter

AFFINE_METHODS = ("leace", "mean", "pca")
METHODS = (*AFFINE_METHODS, "quadratic")
#: methods whose fitted map reads each token's position when applied
POSITIONAL_METHODS = ("mean", "quadratic")


@dataclass
class SiteMap:
    """The fitted map of one site. ``offsets[t]`` (method "mean") is subtracted at position ``t``."""

    method: str
    mean: torch.Tensor  # [d]
    left: torch.Tensor  # [d, r]
    right: torch.Tensor  # [d, r]
    offsets: torch.Tensor | None = None  # [T + 1, d]
    _rank: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def rank(self) -> int:
        """The number of directions the map really erases: the numerical rank of ``left @ right.T``
        (a LEACE fit on few distinct positions erases fewer directions than its ``2K + 1`` columns)."""
        if self._rank is None:
            if self.left.shape[1] == 0:
                self._rank = 0
            else:
                _, r_left = torch.linalg.qr(self.left.double())
                _, r_right = torch.linalg.qr(self.right.double())
                sv = torch.linalg.svdvals(r_left @ r_right.T)
                self._rank = int((sv > 1e-6 * max(float(sv.max()), 1e-30)).sum())
        return self._rank

    def apply(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Erase ``x`` ``[..., d]``; ``positions`` ``[...]`` are needed by method "mean" only."""
        xf = x.to(torch.float32)
        out = xf
        if self.left.shape[1]:
            delta = xf - self.mean.to(x.device)
            out = xf - (delta @ self.right.to(x.device)) @ self.left.to(x.device).T
        if self.offsets is not None:
            if positions is None:
                raise DataError("method 'mean' needs the position of every token: pass positions=")
            t = check_token_positions(positions.to(x.device), upper=self.offsets.shape[0] - 1,
                                      fix="refit on longer sequences, or use method='leace' (position-free at apply time)")
            out = out - self.offsets.to(x.device)[t]
        return out.to(x.dtype)


class SiteFitter:
    """Streams the statistics of one site for one method."""

    def __init__(
        self, method: str, d: int, *, max_position: int, features: str = "fourier", n_freqs: int = 8,
        n_bins: int = 16, k: int | None = None, var: float = 0.9, denoise: bool = True,
    ) -> None:
        if method not in AFFINE_METHODS:
            raise DataError(f"unknown method '{method}'; use one of {METHODS}")
        self.method, self.d, self.T = method, d, max_position
        self.features, self.n_freqs, self.n_bins = features, n_freqs, n_bins
        self.k, self.var, self.denoise = k, var, denoise
        self.n_tokens = 0
        self.leace: LeaceFitter | None = None
        if method == "leace":
            z_dim = 2 * n_freqs + 1 if features == "fourier" else n_bins
            self.leace = LeaceFitter(d, z_dim, dtype=torch.float64)
        self.sums = torch.zeros(max_position + 1, d, dtype=torch.float64)
        self.counts = torch.zeros(max_position + 1, dtype=torch.float64)
        self.sumsq = torch.zeros(max_position + 1, d, dtype=torch.float64)

    def update(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """Add tokens ``x`` ``[n, d]`` at positions ``t`` ``[n]`` (already masked)."""
        if x.shape[0] == 0:
            return
        if int(t.max()) > self.T:
            raise DataError(f"position {int(t.max())} exceeds max_position {self.T}")
        self.n_tokens += int(x.shape[0])
        xd = x.double()
        if self.leace is not None:
            z = position_features(t, kind=self.features, max_position=self.T, n_freqs=self.n_freqs, n_bins=self.n_bins)
            check_concept_labels(z, self.d)
            self.leace.update(xd, z)
        else:
            self.sums.index_add_(0, t.long(), xd)
            self.sumsq.index_add_(0, t.long(), xd * xd)
            self.counts.index_add_(0, t.long(), torch.ones_like(t, dtype=torch.float64))

    def _position_means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seen = self.counts > 0
        if int(seen.sum()) < 2:
            raise DataError("need tokens at two or more positions to fit a positional eraser")
        means = self.sums[seen] / self.counts[seen, None]
        grand = self.sums.sum(0) / self.counts.sum()
        return seen, means, grand

    def _denoise(self, dev: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """Keep the components of the offsets ``[P, d]`` above the estimation-noise edge."""
        n_t = self.counts[seen]
        means = self.sums[seen] / n_t[:, None]
        within = (self.sumsq[seen] - n_t[:, None] * means**2).sum(0)  # [d]
        dof = float(n_t.sum() - len(n_t))
        if dof <= 0:
            raise DataError("need more than one token per position to estimate the noise of the means")
        sd = (within / dof).clamp_min(1e-12).sqrt()
        scaled = dev * n_t.sqrt()[:, None] / sd
        u, s, vh = torch.linalg.svd(scaled, full_matrices=False)
        edge = 1.1 * (len(n_t) ** 0.5 + dev.shape[1] ** 0.5)
        keep = s > edge
        self.kept_rank = int(keep.sum())
        denoised = (u[:, keep] * s[keep]) @ vh[keep]
        return denoised * sd / n_t.sqrt()[:, None]

    def finish(self) -> SiteMap:
        if self.n_tokens == 0:
            raise DataError("no tokens reached this eraser: check the data, the mask and exempt_first")
        d = self.d
        empty = torch.zeros(d, 0)
        if self.leace is not None:
            er = self.leace.eraser
            mean = er.bias if er.bias is not None else torch.zeros(d, dtype=torch.float64)
            return SiteMap("leace", mean.float(), er.proj_left.float(), er.proj_right.mH.float())
        seen, means, grand = self._position_means()
        if self.method == "mean":
            offsets = torch.zeros(self.T + 1, d, dtype=torch.float64)
            pos = torch.nonzero(seen).squeeze(-1)
            dev = means - grand
            if self.denoise:
                dev = self._denoise(dev, seen)
            offsets[pos] = dev
            return SiteMap("mean", grand.float(), empty, empty, offsets.float())
        centred = means - means.mean(0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        k = self.k
        if k is None:
            frac = (s**2).cumsum(0) / (s**2).sum()
            k = int((frac < self.var).sum()) + 1
        if not 0 < k <= vh.shape[0]:
            raise DataError(
                f"k must be in 1..{vh.shape[0]} for this fit (no more than the fitted positions "
                f"or d_model); pass a smaller k, or k=None to choose it by var"
            )
        v = vh[:k].T.float()  # [d, k]
        return SiteMap("pca", grand.float(), v, v)


ErasureMap = SiteMap | QuadraticMap
Fitter = SiteFitter | QuadraticSiteFitter


def new_fitter(
    method: str, d: int, *, max_position: int, features: str = "fourier", n_freqs: int = 8,
    n_bins: int | None = None, k: int | None = None, var: float = 0.9, denoise: bool = True,
) -> Fitter:
    """The streaming fitter of ``method`` for one site (``n_bins`` defaults: 16 one-hot bins for
    LEACE, 8 classes for ``"quadratic"``, whose per-bin covariances need many tokens per bin)."""
    if method == "quadratic":
        return QuadraticSiteFitter(d, max_position=max_position, n_bins=8 if n_bins is None else n_bins)
    return SiteFitter(method, d, max_position=max_position, features=features, n_freqs=n_freqs,
                      n_bins=16 if n_bins is None else n_bins, k=k, var=var, denoise=denoise)
