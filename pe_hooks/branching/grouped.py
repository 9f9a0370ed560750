"""The path ratio of each group of branches on its own (the branches of one prompt, the texts of
one group), averaged over the groups: ``path_ratio_by_group``.

The headline ``path_ratio`` (``pe_hooks.branching.scores``) pools every branch, so pairs of tokens
at one position include pairs from *different prompts*, whose content differs more than two
continuations of one prompt do. The user's picture is about the continuations of one prompt:
``path_ratio_by_group`` standardises and scores each group's points alone (groups of two or more
branches), and averages the groups' ratios. Its null permutes (branch, position) jointly *within*
each group, ``n_perm`` times (mean, 2.5-97.5% interval, p-value, as the headline nulls).
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import StandardScaler

from pe_hooks.branching.scores import _null, _permuted, permuted_path_ratio
from pe_hooks.core.errors import DataError


def grouped_path_ratio(
    x: np.ndarray,
    branch: np.ndarray,
    position: np.ndarray,
    group: np.ndarray,
    *,
    n_perm: int = 100,
    seed: int = 0,
    standardize: bool = True,
) -> dict[str, float]:
    """``path_ratio_by_group`` and its null (see the module docstring); ``group`` ``[n]`` labels
    each point's group. ``standardize``: per group, before scoring (``False`` for a 2-D embedding)."""
    x, branch, position, group = (np.asarray(v) for v in (x, branch, position, group))
    if not len(x) == len(branch) == len(position) == len(group):
        raise DataError("need one branch, position and group per point")
    parts = []
    for g in np.unique(group):
        mine = group == g
        if len(np.unique(branch[mine])) < 2:
            continue
        z = np.asarray(x[mine], dtype=np.float64)
        z = StandardScaler().fit_transform(z) if standardize and z.shape[1] > 2 else z
        parts.append((z, branch[mine], position[mine]))
    if not parts:
        raise DataError("no group has two branches to compare")

    ratios = [(permuted_path_ratio(z, b, t), len(z)) for z, b, t in parts]

    def draw(rng: np.random.Generator) -> float:
        return float(np.mean([ratio(rng.permutation(n)) for ratio, n in ratios]))

    observed = float(np.mean([ratio(None) for ratio, _ in ratios]))
    return _null(observed, _permuted(draw, n_perm, seed), "path_ratio_by_group")
