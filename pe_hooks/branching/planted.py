"""Synthetic branch latents with a known answer, to check the branch scores and to see what the
phenomenon looks like when it is there.

``planted_branches``: ``B`` branches x ``T`` positions in ``D`` dims, each token =
``0.5 x`` its branch's fixed offset (content, scale ``branch_scale``) + a positional drift shared by
all branches (a half-turn arc plus a ramp in 3 fixed directions, scale ``drift``) + unit noise.
With the default ``drift=6`` the drift dominates: the raw branches follow one path and a position
eraser reveals the branches; with ``drift=0`` only the branches remain.
"""

from __future__ import annotations

import numpy as np


def planted_branches(
    seed: int, *, drift: float = 6.0, branch_scale: float = 1.5, n_branches: int = 8, n_positions: int = 40,
    dim: int = 64, direction_seed: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x [B*T, D], branch [B*T], position [B*T])``; positions run 1..T. The offsets and drift
    directions depend on ``direction_seed`` only, the noise on ``seed`` (so two seeds are two
    draws of the same "model": fit an eraser on one, apply it to the other)."""
    g = np.random.default_rng(direction_seed)  # fixed directions
    offsets = g.normal(size=(n_branches, dim)) * branch_scale
    pos_dirs = np.linalg.qr(g.normal(size=(dim, 3)))[0].T
    r = np.random.default_rng(seed)
    t = np.tile(np.arange(1, n_positions + 1), n_branches)
    b = np.repeat(np.arange(n_branches), n_positions)
    ang = t / n_positions * np.pi
    drift_vec = np.stack([np.cos(ang), np.sin(ang), t / n_positions], 1) @ pos_dirs * drift * np.sqrt(dim) / 2
    x = offsets[b] * 0.5 + drift_vec + r.normal(size=(len(t), dim))
    return x, b, t
