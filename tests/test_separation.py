"""Separation metrics and the branch views on planted latents with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from pe_hooks import DataError
from pe_hooks.erasers import fit_on_arrays
from pe_hooks.probes.separation import metrics_table, separation_metrics
from pe_hooks.viz.branches import BranchLatents, analyze

B, T, D = 8, 40, 64


def planted(seed: int, drift: float = 6.0, branch_scale: float = 1.5):  # type: ignore[no-untyped-def]
    """Each branch = a fixed offset (content) + a strong positional drift shared by all branches."""
    g = np.random.default_rng(100)  # fixed directions
    offsets = g.normal(size=(B, D)) * branch_scale
    pos_dirs = np.linalg.qr(g.normal(size=(D, 3)))[0].T
    r = np.random.default_rng(seed)
    t = np.tile(np.arange(1, T + 1), B)
    b = np.repeat(np.arange(B), T)
    ang = t / T * np.pi
    drift_vec = np.stack([np.cos(ang), np.sin(ang), t / T], 1) @ pos_dirs * drift * np.sqrt(D) / 2
    x = offsets[b] * 0.5 + drift_vec + r.normal(size=(len(t), D))
    return x, b, t


def test_drift_hides_branches_and_erasure_recovers_them() -> None:
    x, b, t = planted(seed=1)
    ref_x, _, ref_t = planted(seed=2)  # a reference draw (other "text") to fit the eraser on
    raw = separation_metrics(x, b, t)
    eraser = fit_on_arrays(ref_x, ref_t, method="leace", n_freqs=4, exclude_first=False)
    erased = separation_metrics(eraser.transform(x), b, t)
    # raw: organised by position
    assert raw["position_spearman"] > 0.8
    assert raw["nmi_kmeans_position"] > raw["nmi_kmeans_branch"]
    assert raw["knn_position_agreement"] > 0.5
    # erased: organised by branch
    assert erased["knn_branch_purity"] > 0.8 and erased["knn_branch_purity"] > raw["knn_branch_purity"] + 0.3
    assert erased["nmi_kmeans_branch"] > 0.7 > erased["nmi_kmeans_position"] + 0.3
    assert erased["position_spearman"] < 0.3
    assert erased["silhouette_branch"] > raw["silhouette_branch"] + 0.05


def test_umap_view_agrees_with_original_space() -> None:
    x, b, t = planted(seed=3)
    eraser = fit_on_arrays(planted(seed=4)[0], planted(seed=4)[2], method="leace", n_freqs=4, exclude_first=False)
    res = analyze({"raw": (x, b, t), "erased": (eraser.transform(x), b, t)}, progress=False)
    m = {(r["view"], r["space"], r["metric"]): r["value"] for r in res.rows}
    assert m[("erased", "umap", "knn_branch_purity")] > m[("raw", "umap", "knn_branch_purity")] + 0.3
    assert m[("raw", "umap", "position_spearman")] > 0.7
    assert res.embeddings["raw"].shape == (len(x), 2)
    _, table = metrics_table(res.rows)
    assert "| erased | umap |" in table


def test_umap_is_seeded() -> None:
    from pe_hooks.viz.branches import umap_embed

    x, _, _ = planted(seed=5)
    assert np.allclose(umap_embed(x, seed=3), umap_embed(x, seed=3))


def test_metric_errors() -> None:
    x, b, t = planted(seed=0)
    with pytest.raises(DataError, match="two branches"):
        separation_metrics(x, np.zeros(len(x)), t)
    with pytest.raises(DataError, match="same length"):
        separation_metrics(x, b[:-1], t)
    x[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        separation_metrics(x, b, t)
    with pytest.raises(DataError, match=r"\[n, d\]"):
        BranchLatents.from_arrays(np.zeros(5), np.zeros(5), np.zeros(5))
