"""One options object per erasure method, and maps that hold concept-erasure's own erasers."""

from __future__ import annotations

import pytest
import torch
from concept_erasure import LeaceEraser, QuadraticEraser

import pe_hooks as p
from pe_hooks import ArgumentError, DataError
from pe_hooks.erasers import Leace, Pca, Quadratic, fit_on_arrays
from pe_hooks.erasers.eraser import MAP_TYPES
from tests.conftest import get_model

D, T = 16, 24


def _planted(n_seqs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T).repeat(n_seqs)
    x = torch.randn(len(t), D, generator=g)
    x[:, :3] += torch.stack([torch.cos(t / 4.0), torch.sin(t / 4.0), t / T], 1) * 3
    x[:, 3:6] *= (1 + t[:, None] / T)  # position in the covariance too
    return x, t


def test_the_name_form_and_the_object_form_fit_the_same_eraser() -> None:
    x, t = _planted(40, seed=0)
    for named, obj in (
        (dict(method="pca", k=3), Pca(k=3)),
        (dict(method="leace", features="onehot", n_bins=6), Leace(features="onehot", n_bins=6)),
        (dict(method="quadratic", n_bins=4), Quadratic(n_bins=4)),
    ):
        a, b = fit_on_arrays(x, t, **named), fit_on_arrays(x, t, method=obj)
        assert a.info.options == b.info.options and a.info.method == b.info.method == obj.name
        assert torch.equal(a.transform(x, positions=t), b.transform(x, positions=t)), obj


def test_quadratic_pool_and_min_per_bin_are_reachable_from_fit_eraser() -> None:
    """``pool=1`` shrinks every bin covariance to the pooled one: every transport map is the identity
    (bin-mean subtraction only), where the default maps are not; ``min_per_bin`` refuses thin bins."""
    model = get_model("tiny-gpt2")
    kw = dict(layers=[1], seq_len=16, n_seqs=64, progress=False)
    eye = torch.eye(model.cfg.d_model)
    plain = p.fit_eraser(model, None, method=Quadratic(n_bins=4), **kw).maps["blocks.1.hook_resid_pre"]
    pooled = p.fit_eraser(model, None, method=Quadratic(n_bins=4, pool=1.0), **kw).maps["blocks.1.hook_resid_pre"]
    assert float((plain.ot_maps - eye).abs().max()) > 1e-2
    assert float((pooled.ot_maps - eye).abs().max()) < 1e-3
    with pytest.raises(DataError, match="fewer than 100000 tokens"):
        p.fit_eraser(model, None, method=Quadratic(n_bins=4, min_per_bin=100_000), **kw)


def test_options_are_checked_when_made_and_not_mixed_with_the_name_form() -> None:
    with pytest.raises(DataError, match="pool must be in"):
        Quadratic(pool=1.5)
    with pytest.raises(ArgumentError, match="n_bins must be >= 2"):
        Quadratic(n_bins=1)
    with pytest.raises(ArgumentError, match="k must be >= 1"):
        Pca(k=0)
    x, t = _planted(4, seed=1)
    with pytest.raises(ArgumentError, match=r"Pca\(k=3\)"):
        fit_on_arrays(x, t, method=Pca(), k=3)
    with pytest.raises(ArgumentError, match="options object"):
        fit_on_arrays(x, t, method=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", [Leace(n_freqs=4), Pca(k=2), Quadratic(n_bins=4)])
def test_maps_apply_concept_erasures_own_eraser_and_round_trip_their_state(method: object) -> None:
    """The map of a site is concept-erasure's ``LeaceEraser`` / ``QuadraticEraser`` (called, not
    re-implemented); position 0 is passed through; ``from_state_dict(state_dict())`` is exact."""
    x, t = _planted(40, seed=2)
    e = fit_on_arrays(x, t, method=method)  # type: ignore[arg-type]
    m = e.maps["array"]
    xs, ts = x[t > 0][:50], t[t > 0][:50]
    if isinstance(method, Quadratic):
        assert isinstance(m.eraser, QuadraticEraser)
        bins = (ts - 1) * method.n_bins // (T - 1)
        want = m.eraser(xs, bins)
    else:
        assert isinstance(m.eraser, LeaceEraser)
        want = m.eraser(xs)
    assert torch.equal(m.apply(xs, ts), want)
    zero = torch.zeros(3, dtype=torch.long)
    assert torch.equal(e.transform(x[:3], positions=zero), x[:3])  # position 0: left as it is
    back = MAP_TYPES[e.info.method].from_state_dict(m.state_dict(), method=e.info.method)
    assert torch.equal(back.apply(xs, ts), m.apply(xs, ts))
