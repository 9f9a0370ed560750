"""Quadratic position eraser (class-conditional OT with position bins) on planted signals.

Planted data: sequences of T=32 positions, d=16, 4 position bins. "cov": every bin has mean 0
and the same total variance, but bin k has variance 9 along axis k (the dominant direction rotates
with position), so position lives ONLY in the covariance. "mean": bin k shifts axis 0 by k. A
per-sequence binary content label shifts axis d-1 by +-1.5 in both. Erasers are fitted on 200
sequences and scored on 100 other sequences, probes held out by sequence (GroupKFold).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score

from pe_hooks.core.errors import DataError
from pe_hooks.erasers import fit_on_arrays
from pe_hooks.erasers.methods import SiteMap
from pe_hooks.erasers.quadratic import QuadraticMap, QuadraticSiteFitter, fit_quadratic, position_bins
from pe_hooks.probes.nonlinear import probe_positions

T, D, BINS = 32, 16, 4
CHANCE = 1 / BINS
MARGIN = 0.04  # held-out accuracy after quadratic erasure must be within this of chance


def planted(n_seqs: int, kind: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos = torch.arange(1, T + 1).repeat(n_seqs, 1)
    b = (pos - 1) * BINS // T
    x = torch.randn(n_seqs, T, D, generator=g)
    if kind == "cov":
        scale = torch.ones(BINS, D)
        for k in range(BINS):
            scale[k, k] = 3.0
        x = x * scale[b]
    elif kind == "mean":
        x[..., 0] += b.float()
    content = torch.randint(0, 2, (n_seqs,), generator=g)
    x[..., D - 1] += 1.5 * (2 * content[:, None].float() - 1)
    ids = torch.arange(n_seqs)[:, None].expand(n_seqs, T)
    return x, pos, ids, content[:, None].expand(n_seqs, T)


def qda_heldout(x: torch.Tensor, pos: torch.Tensor, ids: torch.Tensor) -> float:
    y = ((pos - 1) * BINS // T).reshape(-1).numpy()
    s = cross_val_score(QuadraticDiscriminantAnalysis(reg_param=0.01), x.reshape(-1, D).numpy(), y,
                        groups=ids.reshape(-1).numpy(), cv=GroupKFold(4))
    return float(s.mean())


@pytest.fixture(scope="module")
def cov_case() -> dict[str, torch.Tensor]:
    xf, pf, _, _ = planted(200, "cov", seed=1)
    xt, pt, it, ct = planted(100, "cov", seed=2)
    q = fit_quadratic(xf.reshape(-1, D), pf.reshape(-1), n_bins=BINS)
    le = fit_on_arrays(xf.reshape(-1, D).numpy(), pf.reshape(-1).numpy(), method="leace", features="onehot", n_bins=BINS)
    leace = torch.as_tensor(le.transform(xt.reshape(-1, D).numpy(), positions=pt.reshape(-1).numpy())).reshape(xt.shape)
    return {"raw": xt, "leace": leace, "quad": q.apply(xt, pt), "pos": pt, "ids": it, "content": ct}


def test_bins_cover_positions_equally() -> None:
    b = position_bins(torch.arange(0, 65), max_position=64, n_bins=8)
    assert int(b[0]) == -1
    assert torch.bincount(b[1:]).tolist() == [8] * 8


def test_covariance_only_signal_survives_leace_and_not_quadratic(cov_case: dict[str, torch.Tensor]) -> None:
    pos, ids = cov_case["pos"], cov_case["ids"]
    qda = {c: qda_heldout(cov_case[c], pos, ids) for c in ("raw", "leace", "quad")}
    nl = {c: probe_positions(cov_case[c].reshape(-1, D), pos.reshape(-1), ids.reshape(-1), n_bins=BINS,
                             probes=("knn_euclidean", "mlp")) for c in ("raw", "leace", "quad")}
    # planted: decodable raw, by a quadratic probe and by kNN / MLP
    assert qda["raw"] > 0.6 and nl["raw"]["mlp"].accuracy > 0.5 and nl["raw"]["knn_euclidean"].accuracy > 0.4
    # LEACE (linear) leaves it: the class means were already equal
    assert qda["leace"] > 0.55 and nl["leace"]["mlp"].accuracy > 0.45 and nl["leace"]["knn_euclidean"].accuracy > 0.4
    # quadratic eraser removes it, for every probe, on held-out sequences
    assert abs(qda["quad"] - CHANCE) < MARGIN, qda
    for p in ("knn_euclidean", "mlp"):
        assert abs(nl["quad"][p].accuracy - CHANCE) < MARGIN, (p, nl["quad"][p])
        assert abs(nl["quad"][p].shuffled - CHANCE) < MARGIN


def test_mean_shift_signal_removed() -> None:
    xf, pf, _, _ = planted(200, "mean", seed=3)
    xt, pt, it, _ = planted(100, "mean", seed=4)
    q = fit_quadratic(xf.reshape(-1, D), pf.reshape(-1), n_bins=BINS)
    raw = probe_positions(xt.reshape(-1, D), pt.reshape(-1), it.reshape(-1), n_bins=BINS, probes=("linear",))
    out = probe_positions(q.apply(xt, pt).reshape(-1, D), pt.reshape(-1), it.reshape(-1), n_bins=BINS,
                          probes=("linear", "knn_euclidean"))
    assert raw["linear"].accuracy > 0.45
    for s in out.values():
        assert abs(s.accuracy - CHANCE) < MARGIN, s


def test_content_survives(cov_case: dict[str, torch.Tensor]) -> None:
    y = cov_case["content"].reshape(-1).numpy()
    g = cov_case["ids"].reshape(-1).numpy()
    acc = {}
    for c in ("raw", "quad"):
        acc[c] = cross_val_score(LogisticRegression(max_iter=300), cov_case[c].reshape(-1, D).numpy(), y, groups=g,
                                 cv=GroupKFold(4)).mean()
    assert acc["raw"] > 0.9 and acc["quad"] > acc["raw"] - 0.02, acc


def test_in_sample_moments_equalised() -> None:
    xf, pf, _, _ = planted(200, "cov", seed=5)
    x, p = xf.reshape(-1, D).double(), pf.reshape(-1)
    q = fit_quadratic(x, p, n_bins=BINS, shrinkage=False)
    out = q.apply(x.float(), p).double()
    b = position_bins(p, max_position=T, n_bins=BINS)
    covs = torch.stack([torch.cov(out[b == k].T) for k in range(BINS)])
    means = torch.stack([out[b == k].mean(0) for k in range(BINS)])
    assert float((means - means[0]).abs().max()) < 1e-4
    assert float((covs - covs[0]).abs().max()) < 1e-3 * float(covs[0].diagonal().mean())


def test_sitemap_surface_and_position_zero() -> None:
    xf, pf, _, _ = planted(50, "cov", seed=6)
    f = QuadraticSiteFitter(D, max_position=T, n_bins=BINS, features="fourier", n_freqs=8)  # SiteFitter options ignored
    f.update(xf[:25].reshape(-1, D), pf[:25].reshape(-1))
    f.update(xf[25:].reshape(-1, D), pf[25:].reshape(-1))
    m = f.finish()
    assert f.n_tokens == 50 * T and m.method == "quadratic" and m.offsets is None
    assert 0 < m.rank <= D and hasattr(SiteMap, "apply")
    x0 = torch.randn(3, 5, D)
    p0 = torch.tensor([0, 1, 2, 3, 32]).repeat(3, 1)
    out = m.apply(x0, p0)
    assert out.shape == x0.shape and torch.equal(out[:, 0], x0[:, 0]) and not torch.equal(out[:, 1], x0[:, 1])


def test_save_load_bit_identical(tmp_path) -> None:
    xf, pf, _, _ = planted(60, "cov", seed=7)
    m = fit_quadratic(xf.reshape(-1, D), pf.reshape(-1), n_bins=BINS)
    save_file(m.state_dict(), str(tmp_path / "q.safetensors"))
    m2 = QuadraticMap.from_state_dict(load_file(str(tmp_path / "q.safetensors")))
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    xt, pt, _, _ = planted(5, "cov", seed=8)
    assert torch.equal(m.apply(xt, pt), m2.apply(xt, pt))


def test_errors_name_the_fix() -> None:
    xf, pf, _, _ = planted(20, "cov", seed=9)
    m = fit_quadratic(xf.reshape(-1, D), pf.reshape(-1), n_bins=BINS)
    with pytest.raises(DataError, match="needs the position"):
        m.apply(xf)
    with pytest.raises(DataError, match="refit"):
        m.apply(xf[:, :2], torch.full((20, 2), T + 1))
    bad = xf.clone()
    bad[0, 3, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fit_quadratic(bad.reshape(-1, D), pf.reshape(-1), n_bins=BINS)
    with pytest.raises(DataError, match="NaN"):
        m.apply(bad, pf)
    # 3 sequences x 1 position per bin of 16 bins over 16 positions: too few tokens per bin
    with pytest.raises(DataError, match="fewer bins"):
        fit_quadratic(xf[:3, :16].reshape(-1, D), pf[:3, :16].reshape(-1), n_bins=16)
    with pytest.raises(DataError, match="shape"):
        fit_quadratic(xf.reshape(-1, D), pf.reshape(-1)[:-1], n_bins=BINS)
    with pytest.raises(DataError, match="integers"):
        fit_quadratic(xf.reshape(-1, D), pf.reshape(-1).float() + 0.5, n_bins=BINS)


def test_pool_shrinks_maps_towards_identity() -> None:
    xf, pf, _, _ = planted(60, "cov", seed=10)
    x, p = xf.reshape(-1, D), pf.reshape(-1)
    full = fit_quadratic(x, p, n_bins=BINS)
    half = fit_quadratic(x, p, n_bins=BINS, pool=0.5)
    one = fit_quadratic(x, p, n_bins=BINS, pool=1.0)
    eye = torch.eye(D)
    dist = [float((m.ot_maps - eye).abs().max()) for m in (full, half, one)]
    assert dist[0] > dist[1] > dist[2] and dist[2] < 1e-3, dist
    with pytest.raises(DataError, match="pool"):
        fit_quadratic(x, p, n_bins=BINS, pool=1.5)


def test_quadratic_method_through_fit_eraser_in_model_offline_and_saved(tmp_path: Path) -> None:
    """``fit_eraser(method="quadratic")``: in-model hooks equal the offline transform (one layer:
    nothing upstream), positions are read from the model, and save/load is bit-identical."""
    import pe_hooks as p
    from pe_hooks.data import load_data, stream_activations
    from tests.conftest import get_model

    model = get_model("tiny-llama")
    fit = load_data(model, None, seq_len=32, n_seqs=40)
    test = load_data(model, None, seq_len=32, n_seqs=48).subset(list(range(40, 48)))
    eraser = p.fit_eraser(model, fit, method="quadratic", layers=[1], n_bins=4, progress=False)
    assert eraser.info.method == "quadratic" and eraser.maps["blocks.1.hook_resid_pre"].rank > 0
    name = "blocks.1.hook_resid_pre"
    raw = next(stream_activations(model, test, [name], batch_size=8, progress=False))
    inside = next(stream_activations(model, test, [name], batch_size=8, hooks=eraser.hooks(model), progress=False))
    offline = eraser.transform(raw.acts[name], hook_name=name, positions=raw.positions)
    torch.testing.assert_close(inside.acts[name], offline, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(inside.acts[name], raw.acts[name], atol=1e-3)
    back = p.PositionEraser.load(eraser.save(tmp_path / "q"), model=model)
    assert torch.equal(back.transform(raw.acts[name], hook_name=name, positions=raw.positions), offline)
