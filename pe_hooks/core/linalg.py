"""Numeric primitives shared by the probes and the branches analysis.

``ridge_from_moments``: the ridge regression of targets ``y`` on features ``x`` from the moments of
the training tokens (``n``, ``sum x``, ``sum y``, ``x^T x``, ``x^T y``), with an unpenalised
intercept: the features centred (and, with ``standardize``, scaled to unit variance), then
``w = (C + alpha n I)^-1 c_xy``, ``b = mean(y) - mean(x) . w``. Held-out predictions are then exact
from the test tokens or from their moments, without refitting.
"""

from __future__ import annotations

import torch


def ridge_from_moments(
    n: torch.Tensor | float, sx: torch.Tensor, sy: torch.Tensor, sxx: torch.Tensor, sxy: torch.Tensor,
    alpha: float, *, standardize: bool = True,
) -> list[tuple[torch.Tensor, float]]:
    """``[(w [d], b)]`` of each target: ``sy`` ``[L]`` and ``sxy`` ``[L, d]`` hold ``L`` targets of the
    same tokens (one factorisation serves them all); penalty ``alpha * n`` on the weights of the
    standardised (``standardize``) or centred features."""
    mx = sx / n
    my = sy / n  # [L]
    cxx = sxx - n * torch.outer(mx, mx)
    cxy = sxy - n * my[:, None] * mx[None]  # [L, d]
    if standardize:
        var = (cxx.diagonal() / n).clamp_min(1e-12)
        sd = var.sqrt()
        a = cxx / torch.outer(sd, sd)
        a.diagonal().add_(alpha * n)
        w = torch.linalg.solve(a, (cxy / sd).T).T / sd  # [L, d]
    else:
        a = cxx.clone()
        a.diagonal().add_(alpha * n)
        w = torch.linalg.solve(a, cxy.T).T
    return [(w[i], float(my[i] - mx @ w[i])) for i in range(len(my))]
