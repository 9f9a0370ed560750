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
from concept_erasure import LeaceEraser, LeaceFitter

from pe_hooks.core.errors import DataError
from pe_hooks.data.labels import check_token_positions
from pe_hooks.erasers.features import check_concept_labels, feature_dim, position_features
from pe_hooks.erasers.quadratic import QuadraticMap, QuadraticSiteFitter

AFFINE_METHODS = ("leace", "mean", "pca")
METHODS = (*AFFINE_METHODS, "quadratic")
#: methods whose fitted map reads each token's position when applied
POSITIONAL_METHODS = ("mean", "quadratic")


@dataclass
class SiteMap:
    """The fitted map of one site: concept-erasure's own ``LeaceEraser`` (the affine part
    ``x -> x - (x - bias) R^T L^T``: LEACE's, or PCA's projection; rank 0 for "mean") and, for
    method "mean", the per-position offsets (``offsets[t]`` is subtracted at position ``t``)."""

    method: str
    eraser: LeaceEraser
    offsets: torch.Tensor | None = None  # [T + 1, d]
    _rank: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def mean(self) -> torch.Tensor:
        """``[d]`` the point the affine part is centred on."""
        assert self.eraser.bias is not None  # always set by the fitters and from_state_dict
        return self.eraser.bias

    @property
    def left(self) -> torch.Tensor:
        """``[d, r]`` ``L`` of the affine part."""
        return self.eraser.proj_left

    @property
    def right(self) -> torch.Tensor:
        """``[d, r]`` ``R`` of the affine part."""
        return self.eraser.proj_right.mH

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

    def affine(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(mean, R, L)`` of the map ``x -> x - (x - mean) R L^T``, or ``None`` if it is not affine
        (per-position offsets)."""
        return None if self.offsets is not None else (self.mean, self.right, self.left)

    def apply(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Erase ``x`` ``[..., d]``; ``positions`` ``[...]`` are needed by method "mean" only."""
        out = x.to(torch.float32)
        if self.left.shape[1]:
            out = self._eraser_on(x.device)(out)
        if self.offsets is not None:
            if positions is None:
                raise DataError("method 'mean' needs the position of every token: pass positions=")
            t = check_token_positions(positions.to(x.device), upper=self.offsets.shape[0] - 1,
                                      fix="refit on longer sequences, or use method='leace' (position-free at apply time)")
            out = out - self.offsets.to(x.device)[t]
        return out.to(x.dtype)

    def _eraser_on(self, device: torch.device) -> LeaceEraser:
        er = self.eraser
        if er.proj_left.device == device:
            return er
        return LeaceEraser(er.proj_left.to(device), er.proj_right.to(device), self.mean.to(device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain contiguous tensors (safetensors-ready): ``mean``, ``left``, ``right`` [, ``offsets``]."""
        out = {"mean": self.mean.contiguous(), "left": self.left.contiguous(), "right": self.right.clone().contiguous()}
        if self.offsets is not None:
            out["offsets"] = self.offsets.contiguous()
        return out

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], method: str = "leace") -> SiteMap:
        """The map ``state_dict`` wrote (``KeyError`` naming a missing tensor), its tensors laid out
        as the fitter lays them out (``LeaceFitter``: ``proj_right`` contiguous; PCA: the transpose of
        its contiguous directions), so it computes bit for bit what the fitted map did."""
        right = sd["right"]
        proj_right = right.mH if method == "pca" else right.mH.contiguous()
        return cls(method, LeaceEraser(sd["left"], proj_right, sd["mean"]), sd.get("offsets"))


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
            self.leace = LeaceFitter(d, feature_dim(features, n_freqs, n_bins), dtype=torch.float64)
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
        empty = torch.zeros(0, d)
        if self.leace is not None:
            er = self.leace.eraser
            mean = er.bias if er.bias is not None else torch.zeros(d, dtype=torch.float64)
            return SiteMap("leace", LeaceEraser(er.proj_left.float(), er.proj_right.float(), mean.float()))
        seen, means, grand = self._position_means()
        if self.method == "mean":
            offsets = torch.zeros(self.T + 1, d, dtype=torch.float64)
            pos = torch.nonzero(seen).squeeze(-1)
            dev = means - grand
            if self.denoise:
                dev = self._denoise(dev, seen)
            offsets[pos] = dev
            return SiteMap("mean", LeaceEraser(empty.T, empty, grand.float()), offsets.float())
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
        return SiteMap("pca", LeaceEraser(v, v.mH, grand.float()))


ErasureMap = SiteMap | QuadraticMap
Fitter = SiteFitter | QuadraticSiteFitter
