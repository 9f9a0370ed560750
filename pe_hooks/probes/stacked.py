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
   penalty ``||V||^2 / 2`` on the summed log-loss (scikit-learn's ``C = 1``), fitted by Newton
   steps (``fit_logistic``), each fold's started from the previous fold's optimum;
4. prediction for a sampled token of fold ``f``: ``argmax h_f(L_f(x))``. Neither stage ever saw
   fold ``f``.

The sampled tokens are a seeded reservoir of whole sequences (``pe_hooks.probes.reservoir``), so
memory does not grow with the number of tokens; the moments behind the LDA use every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pe_hooks.probes.linear import Shrinkage
from pe_hooks.probes.stats import LABELS, LayerStats


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
    cn = torch.einsum("ef,fkc->ekc", keep, stats.cn)  # [E, K, C]
    csx = torch.einsum("ef,fkcd->ekcd", keep, stats.csx)  # [E, K, C, d]
    present = cn > 0
    mu = torch.where(present[..., None], csx / cn.clamp_min(1)[..., None] - mean[:, None, None, :], 0.0)
    sy = keep @ stats.sy  # [E, K]
    sxy = torch.einsum("ef,fkd->ekd", keep, stats.sxy)
    cxy = sxy / n[:, None, None] - mean[:, None, :] * (sy / n[:, None])[..., None]  # [E, K, d]
    mu = torch.cat([mu, cxy[:, :, None, :]], 2)
    e, k, c, d = mu.shape
    rhs = mu.permute(0, 3, 1, 2).reshape(e, d, k * c)
    sxx = stats.sxx.reshape(stats.sxx.shape[0], -1)  # [F, d*d]
    sol = torch.empty(e, d, k * c, dtype=torch.float64)
    cov = torch.empty(d, d, dtype=torch.float64)
    # one d x d covariance at a time, in place: ~2x faster than the batched [E, d, d] version
    # (which allocates and zeroes several fresh E d^2 buffers)
    for i in range(e):
        torch.mv(sxx.T, keep[i], out=cov.view(-1))
        cov.div_(n[i]).addr_(mean[i], mean[i], alpha=-1)  # total covariance of the kept folds
        if shrinkage == "auto":
            shrunk = shrunk_covariance(cov, n[i])
        else:
            shrunk = cov.mul(1 - shrinkage)
            shrunk.diagonal().add_(shrinkage * float(cov.diagonal().mean()))
        chol, _ = torch.linalg.cholesky_ex(shrunk)
        sol[i] = torch.cholesky_solve(rhs[i], chol)  # [d, K*C']
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
                 init: Logistic | None = None, hessian_tokens: int = 2048, seed: int = 0) -> Logistic:
    """Multinomial logistic regression of classes ``c`` on features ``s`` ``[n, k]`` (float64,
    standardised; loss = summed log-loss + ``||V||^2 / 2``, scikit-learn's ``C = 1``), from zero or
    from ``init`` (a fit of a similar problem, e.g. another fold's).

    Solver: Newton steps with the exact gradient and a Hessian estimated on ``hessian_tokens``
    seeded tokens (a positive-definite preconditioner: with the backtracking line search every
    step descends, so the iterations converge to the one optimum of this strictly convex loss --
    the subsample changes the path, not the answer), until ``max |gradient| < tol`` (of the mean
    loss). The LDA scores are strongly correlated (they sum to zero over the bins, weighted by the
    bin sizes); plain L-BFGS took ~100 evaluations and stopped short of the optimum, these
    Newton steps take ~10 on SmolLM2 and reach it.
    """
    z = s.double()
    mean = z.mean(0)
    scale = z.std(0, correction=0)  # as StandardScaler
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    z = (z - mean) / scale
    n, k = z.shape
    C = n_classes
    z1 = torch.cat([z, torch.ones(n, 1, dtype=torch.float64)], 1)  # the last row of theta is the intercept
    onehot = torch.nn.functional.one_hot(c, C).double()
    penalised = torch.ones(k + 1, C, dtype=torch.float64)
    penalised[-1] = 0
    theta = torch.zeros(k + 1, C, dtype=torch.float64)
    if init is not None and init.V.shape == (k, C):
        theta = torch.cat([init.V, init.a[None]])
    sub = z1 if n <= hessian_tokens else z1[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:hessian_tokens]]
    m = len(sub)
    diag = torch.arange(C)
    ridge = (penalised / n).reshape(-1).diag() + 1e-9 * torch.eye((k + 1) * C, dtype=torch.float64)

    def f(th: torch.Tensor) -> tuple[float, torch.Tensor]:
        logits = z1 @ th
        top = logits.amax(-1, keepdim=True)
        e = (logits - top).exp_()
        se = e.sum(-1, keepdim=True)
        loss = se.log().add_(top).sum() - (logits * onehot).sum() + 0.5 * (th * th * penalised).sum()
        r = e.div_(se).sub_(onehot)
        return float(loss) / n, (z1.T @ r + th * penalised) / n

    loss, g = f(theta)
    for _ in range(max_iter):
        if float(g.abs().max()) < tol:
            break
        p = torch.softmax(sub @ theta, -1)  # [m, C]
        q = (sub[:, :, None] * p[:, None, :]).reshape(m, -1)  # rows z (x) p
        h = -(q.T @ q).view(k + 1, C, k + 1, C) / m
        h[:, diag, :, diag] += torch.einsum("nc,na,nb->cab", p, sub, sub) / m  # sum p_c z z^T on the c-c blocks
        step_dir = -torch.linalg.solve(h.reshape((k + 1) * C, -1) + ridge, g.reshape(-1)).view(k + 1, C)
        slope = float((g * step_dir).sum())
        if slope >= 0:  # not a descent direction (numerically singular estimate): a gradient step
            step_dir, slope = -g, -float((g * g).sum())
        step = 1.0
        for _ in range(30):
            new_loss, new_g = f(theta + step * step_dir)
            if new_loss <= loss + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        theta, loss, g = theta + step * step_dir, new_loss, new_g
    return Logistic(mean, scale, theta[:k].clone(), theta[k].clone())


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
