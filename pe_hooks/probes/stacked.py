"""The sweep's classifier probe: closed-form LDA from streamed moments, recalibrated by a small
multinomial logistic regression fitted on *out-of-sample* LDA scores (stacked generalisation).

Why two stages. LDA (``pe_hooks.probes.linear.fit_lda``) is exact from the streamed moments, so it
uses every token, but it assumes Gaussian classes with one shared covariance. A logistic
regression on all ``d`` features makes no such assumption, but needs the tokens and many
iterations. On SmolLM2 the plain LDA found 0.00-0.03 less position than scikit-learn's
``StandardScaler`` + ``LogisticRegression`` on the same tokens; the stacked probe finds as much or
more (``benchmarks/sweep_speed.py``). It keeps LDA's ``d``-dimensional directions and learns, from
held-out scores, how to turn the ``C + 1`` scores into a decision: ``(C + 1) C + C`` parameters
instead of ``d C``.

The math, for ``F`` folds (sequences grouped) and ``C`` bins. With ``S_{-A}`` the moments of every
fold not in ``A`` and ``lda(S)`` the shrunk discriminant fitted from moments ``S``
(``L(x)`` in ``R^{C+1}``):

1. outer models ``L_f = lda(S_{-f})`` and inner models ``L_{fg} = lda(S_{-{f,g}})`` for every pair
   ``f != g`` (symmetric, so ``F (F - 1) / 2`` of them). Each is ``L(x) = x Sigma^-1 (mu_c - mu)``
   with ``Sigma`` the *total* covariance of its tokens, shrunk towards ``tr(Sigma)/d I`` by
   concept-erasure's ``optimal_linear_shrinkage`` factor (computed here in ``O(d^2)``). Without
   shrinkage, ``Sigma_total^-1 M`` and ``Sigma_within^-1 M`` span the same columns
   (Woodbury: ``Sigma_t = Sigma_w + M D M^T``), and the second stage is linear in the scores, so the
   total covariance loses nothing; it is the same for the real and the shuffled labels, so one
   Cholesky factor per fold set serves both. A last column, ``Sigma^-1 cov(x, t)`` (the regression
   direction of the position ``t`` itself), adds the within-bin order;
2. training set of fold ``f``'s second stage: the sampled tokens ``x`` of every other fold ``g``
   with features ``L_{fg}(x)`` -- scores of a model that never saw ``x``'s sequence (nor fold ``f``),
   so the second stage learns how *out-of-sample* scores behave (cross-fitting, Wolpert 1992);
3. second stage ``h_f``: multinomial logistic regression on the standardised ``C + 1`` scores, L2
   penalty ``||V||^2 / 2`` on the summed log-loss (scikit-learn's ``C = 1``), fitted by L-BFGS
   from zero;
4. prediction for a sampled token of fold ``f``: ``argmax h_f(L_f(x))``. Neither stage ever saw
   fold ``f``.

The sampled tokens are a seeded reservoir of whole sequences (``pe_hooks.probes.reservoir``), so
memory does not grow with the number of tokens; the moments behind the LDA use every token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pe_hooks.probes.linear import Shrinkage
from pe_hooks.probes.stats import LABELS, LayerStats


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the many small solves of the probes (restored afterwards): on a
    busy 2-core machine the default pool made them ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def shrunk_covariance(S: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``concept_erasure.optimal_linear_shrinkage(S, n)`` for a batch ``[..., d, d]``, in ``O(d^2)``
    (the library forms ``S @ (tr(S)/d I)``, a ``d^3`` product, for ``tr(S)^2 / d``)."""
    p = S.shape[-1]
    tr = S.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    sigma0_sq = tr * tr / p  # ||tr(S)/p I||_F^2
    s_sq = (S * S).sum((-2, -1), keepdim=True)
    prod = tr * tr / p  # tr(S sigma0)
    n = n.reshape(*n.shape, 1, 1).to(S.dtype)
    top = tr * tr * sigma0_sq / n
    bottom = s_sq * sigma0_sq - prod * prod
    eps = torch.finfo(S.dtype).eps
    alpha = 1 - (top + eps) / (bottom + eps)
    beta = (1 - alpha) * (prod + eps) / (sigma0_sq + eps)
    out = alpha * S
    out.diagonal(dim1=-2, dim2=-1).add_((beta * tr / p)[..., 0])
    return out


def discriminant_directions(
    stats: LayerStats, excluded: Sequence[tuple[int, ...]], shrinkage: Shrinkage = "auto",
) -> torch.Tensor:
    """``[len(excluded), len(LABELS), d, C + 1]`` directions from the moments of every fold not in
    ``excluded[i]``, for the real and the shuffled labels: ``Sigma^-1 (mu_c - mu)`` for each bin
    ``c`` (a zero column for a bin without tokens) and the ridge-free regression direction
    ``Sigma^-1 cov(x, position)``, with ``Sigma`` the shrunk total covariance."""
    keep = torch.ones(len(excluded), stats.n.shape[0], dtype=torch.float64)
    for i, ex in enumerate(excluded):
        keep[i, list(ex)] = 0
    n = keep @ stats.n  # [E]
    mean = (keep @ stats.sx) / n[:, None]  # [E, d]
    sxx = torch.einsum("ef,fij->eij", keep, stats.sxx)
    cov = sxx / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    if shrinkage == "auto":
        cov = shrunk_covariance(cov, n)
    else:
        target = cov.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None] * torch.eye(cov.shape[-1], dtype=cov.dtype)
        cov = (1 - shrinkage) * cov + shrinkage * target
    chol = torch.linalg.cholesky(cov)
    cn = torch.einsum("ef,fkc->ekc", keep, stats.cn)  # [E, K, C]
    csx = torch.einsum("ef,fkcd->ekcd", keep, stats.csx)  # [E, K, C, d]
    present = cn > 0
    mu = torch.where(present[..., None], csx / cn.clamp_min(1)[..., None] - mean[:, None, None, :], 0.0)
    sy = keep @ stats.sy  # [E, K]
    sxy = torch.einsum("ef,fkd->ekd", keep, stats.sxy)
    cxy = sxy / n[:, None, None] - mean[:, None, :] * (sy / n[:, None])[..., None]  # [E, K, d]
    mu = torch.cat([mu, cxy[:, :, None, :]], 2)
    e, k, c, d = mu.shape
    sol = torch.cholesky_solve(mu.permute(0, 3, 1, 2).reshape(e, d, k * c), chol)  # [E, d, K*C']
    return sol.reshape(e, d, k, c).permute(0, 2, 1, 3)


@dataclass
class Logistic:
    """``argmax_c ((s - mean) / scale) V + a`` on ``k`` score features."""

    mean: torch.Tensor
    scale: torch.Tensor
    V: torch.Tensor
    a: torch.Tensor

    def predict(self, s: torch.Tensor) -> torch.Tensor:
        return (((s.double() - self.mean) / self.scale) @ self.V + self.a).argmax(-1)


def fit_logistic(s: torch.Tensor, c: torch.Tensor, n_classes: int, max_iter: int = 100, tol: float = 1e-5,
                 init: Logistic | None = None) -> Logistic:
    """Multinomial logistic regression of classes ``c`` on features ``s`` ``[n, k]`` (float64,
    standardised; loss = summed log-loss + ``||V||^2 / 2``, scikit-learn's ``C = 1``), by L-BFGS
    with the analytic gradient, from zero or from ``init`` (a fit of a similar problem, e.g. another
    fold's: the loss is strictly convex, so the start changes the iterations, not the optimum).

    Preconditioned: the LDA scores are strongly correlated (they sum to zero over the bins, weighted
    by the bin sizes), which made plain L-BFGS stop at ``max_iter`` far from the optimum. The
    solver works in whitened coordinates ``V = M W`` with ``M = L^{-T}``, ``L L^T = z^T z / n + 10^{-3} I``
    (``z`` the standardised features): the same objective, reparametrised, so the same optimum --
    ``||V||^2`` stays the penalty -- reached in about half the evaluations.
    """
    z = s.double()
    mean = z.mean(0)
    scale = z.std(0, correction=0)  # as StandardScaler
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    z = (z - mean) / scale
    n, k = z.shape
    eye = torch.eye(k, dtype=torch.float64)
    chol = torch.linalg.cholesky(z.T @ z / n + 1e-3 * eye)
    M = torch.linalg.solve_triangular(chol.T, eye, upper=True)  # L^{-T}
    zw = z @ M
    onehot = torch.nn.functional.one_hot(c, n_classes).double()
    idx, zt = c[:, None], zw.T.contiguous()
    theta = torch.zeros(k * n_classes + n_classes, dtype=torch.float64)
    if init is not None and init.V.shape == (k, n_classes):
        theta = torch.cat([(chol.T @ init.V).reshape(-1), init.a])  # W = M^{-1} V = L^T V

    def f(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one exp per evaluation: the softmax's exponentials give both log-sum-exp and gradient
        W, a = th[: k * n_classes].view(k, n_classes), th[k * n_classes:]
        V = M @ W
        logits = torch.addmm(a, zw, W)
        top = logits.amax(-1, keepdim=True)
        e = (logits - top).exp_()
        se = e.sum(-1, keepdim=True)
        loss = se.log().add_(top).sum() - logits.gather(1, idx).sum() + 0.5 * (V * V).sum()
        r = e.div_(se).sub_(onehot)
        return loss / n, torch.cat([torch.addmm(M.T @ V, zt, r).reshape(-1), r.sum(0)]) / n

    theta = _lbfgs(f, theta, max_iter, tol=tol)
    return Logistic(mean, scale, M @ theta[: k * n_classes].view(k, n_classes), theta[k * n_classes:].clone())


def _lbfgs(f, x: torch.Tensor, max_iter: int, m: int = 10, tol: float = 1e-7) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Plain L-BFGS with backtracking (Armijo) line search; deterministic, no autograd."""
    loss, g = f(x)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    for _ in range(max_iter):
        if float(g.abs().max()) < tol:
            break
        q = g.clone()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist)):
            a = (s @ q) / (y @ s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += s * (a - (y @ q) / (y @ s))
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            d, slope = -g, -float(g @ g)
        step = 1.0
        for _ in range(30):
            new_loss, new_g = f(x + step * d)
            if float(new_loss) <= float(loss) + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_vec, y_vec = step * d, new_g - g
        if float(s_vec @ y_vec) > 1e-12:
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            if len(s_hist) > m:
                s_hist.pop(0)
                y_hist.pop(0)
        x, loss, g = x + s_vec, new_loss, new_g
    return x


def _flat(w: torch.Tensor) -> torch.Tensor:
    """``[K, d, C] -> [d, K C]``."""
    return w.permute(1, 0, 2).reshape(w.shape[1], -1)


def stacked_predictions(
    stats: LayerStats, x: torch.Tensor, fold: torch.Tensor, bins: torch.Tensor, *, shrinkage: Shrinkage = "auto",
    max_train: int = 16384, seed: int = 0, tol: float = 1e-5,
) -> torch.Tensor:
    """Held-out bin predictions ``[K, n]`` for the sampled tokens ``x`` ``[n, d]`` of folds ``fold``
    ``[n]``, for each label set of ``LABELS`` (real, shuffled).

    ``stats``: the per-fold moments of *all* streamed tokens; ``bins`` ``[K, n]``: the sampled
    tokens' bins under each label set (used only to train the second stage of *other* folds).
    ``max_train``: the second stage (``C (C + 1)`` parameters) is fitted on at most this many
    tokens (a seeded random subset of the other folds' sampled tokens).
    """
    n_folds = int(stats.n.shape[0])
    n_classes = int(stats.cn.shape[-1])
    present = [f for f in range(n_folds) if bool((fold == f).any())]
    with_data = [f for f in range(n_folds) if float(stats.n[f]) > 0]
    # an inner model needs a fold outside {f, g}; with two folds there is none, and fold f's second
    # stage learns from the outer model's (in-sample) scores of fold g instead
    nested = len(with_data) > 2
    pairs = [(f, g) for i, f in enumerate(present) for g in present[i + 1:]] if nested else []
    sets = [(f,) for f in present] + pairs
    W = discriminant_directions(stats, sets, shrinkage).float()  # [E, K, d, C]
    index = {s: i for i, s in enumerate(sets)}
    # scores of each fold's tokens under every model that never saw that fold: S[(g, set)] [n_g, K, C]
    scores: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
    for g in present:
        mine = [s for s in sets if g in s]
        cols = torch.cat([_flat(W[index[s]]) for s in mine], 1)  # [d, |mine| K C]
        sg = (x[fold == g].float() @ cols).view(-1, len(mine), len(LABELS), W.shape[-1])
        for i, s in enumerate(mine):
            scores[(g, s)] = sg[:, i]
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(LABELS), len(x), dtype=torch.long)
    warm: dict[int, Logistic] = {}
    for f in present:
        te = fold == f
        train = [(scores[(g, (min(f, g), max(f, g)))] if nested else (x[fold == g].float() @ _flat(W[index[(f,)]])).view(
            -1, len(LABELS), W.shape[-1]), bins[:, fold == g]) for g in present if g != f]
        if not train:  # one sampled fold only: nothing held out to learn the second stage from
            out[:, te] = scores[(f, (f,))].argmax(-1).T
            continue
        feats = torch.cat([s for s, _ in train])  # [m, K, C]
        targets = torch.cat([b for _, b in train], 1)  # [K, m]
        pick = torch.randperm(len(feats), generator=gen)[:max_train] if len(feats) > max_train else slice(None)
        for k in range(len(LABELS)):
            model = fit_logistic(feats[pick, k], targets[k, pick], n_classes, tol=tol, init=warm.get(k))
            warm[k] = model  # the next fold's problem is nearly the same: start from this optimum
            out[k, te] = model.predict(scores[(f, (f,))][:, k])
    return out
