"""Issue 23 on rotary models: maps that edit their input, left-padded ``remove``, long positions.

Independent references: a separate HF model (eager attention) run with hand-edited
``position_ids`` (``t + 2`` for a map that adds 2 in place; ``arange + offset`` for long positions),
or with its rotary module patched to return each row's own mean tables (``remove`` on a padded
batch). Tolerance 1e-5 on float32 logits unless stated.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import pe_hooks as p
from pe_hooks.models import load_hf
from tests.bad_input_cases import hf_mean_tables
from tests.conftest import get_model

ATOL = 1e-5
IDS = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12, 9, 15, 71, 5]])


def _ref(name: str) -> Any:
    ref, _ = load_hf(name)
    ref.set_attn_implementation("eager")
    return ref


def _arange(ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
    return torch.arange(ids.shape[1])[None].expand_as(ids) + offset


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---- case 4: a map that edits its input in place ------------------------------------------------

@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
@pytest.mark.parametrize("site", ["rotary", "rot_qk"])
def test_in_place_map_gives_cos_and_sin_the_same_positions(name: str, site: str) -> None:
    g = get_model(name)
    if site == "rot_qk" and not p.inspect(g).rot_q:
        pytest.skip("hook_rot_q/k never fire on this architecture")
    hooks = p.replace(g, lambda q: q.add_(2).float(), site=site)
    with torch.no_grad(), hooks.applied(g):
        got = g(IDS)
        again = g(IDS)  # the positions pe-hooks keeps are not changed by the map either
    with torch.no_grad():
        want = _ref(name)(IDS, position_ids=_arange(IDS) + 2).logits
    assert _diff(got, want) <= ATOL  # was 3.9e-3: cos(t+2), sin(t+4)
    assert _diff(again, want) <= ATOL


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-bloom"])
def test_in_place_map_on_learned_and_alibi(name: str) -> None:
    g = get_model(name)
    with torch.no_grad():
        with p.replace(g, p.shift(2)).applied(g):
            want = g(IDS)
        with p.replace(g, lambda q: q.add_(2).float()).applied(g):
            got = g(IDS)
    assert _diff(got, want) <= ATOL


def test_a_random_map_is_called_once_per_forward() -> None:
    """cos and sin of every layer come from one call of the map (a random map stays a rotation)."""
    g = get_model("tiny-llama")
    calls: list[int] = []

    def noisy(t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return t.float() + torch.rand(t.shape) * 3

    with torch.no_grad(), p.replace(g, noisy).applied(g):
        g(IDS)
    assert len(calls) == 1


# ---- case 2: positions past pi / w_min decode exactly ---------------------------------------------

def _inv(base: float, dim: int) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


@pytest.mark.parametrize(("base", "dim"), [(1e4, 16), (1e4, 128), (1e5, 64), (5e5, 128)])
def test_decoding_is_exact_over_a_long_context(base: float, dim: int) -> None:
    """Every integer position up to 2^17 (beyond the old limit pi / w_min: ~9.9k for tiny-llama,
    ~27k for base 1e4 and head size 128) decodes from HF's float32 tables and reproduces them."""
    from pe_hooks.sites.rotary_positions import decode_positions, residual

    inv = _inv(base, dim)
    t = torch.arange(1 << 17, dtype=torch.float32)
    ang = t[:, None] * inv  # HF: float32 products, then cos/sin
    angles = torch.atan2(torch.sin(ang), torch.cos(ang))
    got = decode_positions(angles, inv)
    assert torch.equal(got, t), f"wrong at {int((got != t).nonzero()[0])}"
    assert float(residual(got, angles, inv).max()) < 1e-5


@pytest.mark.parametrize("offset", [20000, 32760, 50000])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox"])
def test_long_positions_vs_hf(name: str, offset: int) -> None:
    g = get_model(name)
    ref = _ref(name)
    pos = _arange(IDS, offset)
    cases = [
        (p.replace(g, p.shift(0)), pos),
        (p.replace(g, lambda t: (t % 97).float()), pos % 97),  # non-affine: needs the exact positions
        (p.replace(g, p.shift(-offset + 3)), pos - offset + 3),
    ]
    for hooks, want_pos in cases:
        with torch.no_grad(), hooks.applied(g):
            got = g(IDS, position_ids=pos)
        with torch.no_grad():
            want = ref(IDS, position_ids=want_pos).logits
        assert _diff(got, want) <= ATOL, hooks.label  # was 2.5e-3 at +20000, an error at +50000
    with torch.no_grad(), p.remove(g).applied(g):  # mean over each row's own 0..max t
        got = g(IDS, position_ids=pos)
    with torch.no_grad():  # HF with its rotary module patched by hand to those mean tables
        want = hf_mean_tables(name, offset + IDS.shape[1])(IDS).logits
    assert _diff(got, want) <= ATOL


def test_undecodable_tables_raise_naming_the_limit() -> None:
    g = get_model("tiny-llama")
    with pytest.raises(p.DataError, match="integer position_ids"), torch.no_grad(), p.zero(g).applied(g):
        g(IDS, position_ids=_arange(IDS).float() + 0.5)  # fractional positions: no integer fits
    with torch.no_grad():  # no hooks left behind after the error
        g(IDS)


@pytest.mark.parametrize("site", ["rotary", "rot_qk"])
@pytest.mark.parametrize("how", ["past the limit", "fractional"])
def test_positions_past_the_limit_name_the_limit_on_every_rotary_site(site: str, how: str) -> None:
    """Past 2^20 (or at fractional position ids) both rotary sites refuse naming the limit and the fix;
    site='rot_qk' said 'not a rotation of the pre-rotation q/k ... use site=rotary' (the wrong thing)."""
    from pe_hooks.sites.rotary_positions import DECODE_LIMIT

    g = get_model("tiny-llama")
    pos = _arange(IDS, DECODE_LIMIT + 5000) if how == "past the limit" else _arange(IDS).float() + 0.5
    with pytest.raises(p.DataError, match=f"decodes positions exactly up to {DECODE_LIMIT}; pass integer position_ids"):
        with torch.no_grad(), p.replace(g, p.shift(0), site=site).applied(g):
            g(IDS, position_ids=pos)


def test_rot_qk_still_refuses_what_is_not_a_rotation() -> None:
    """An edit of hook_rot_q before pe-hooks' (so it is no rotation of hook_q) keeps its own message."""
    g = get_model("tiny-llama")
    hooks = p.replace(g, p.shift(0), site="rot_qk")
    spoil = [("blocks.0.attn.hook_rot_q", lambda x, hook: x.flip(-1))]
    with pytest.raises(p.DataError, match="not a rotation of the pre-rotation q/k"), torch.no_grad():
        g.run_with_hooks(IDS, fwd_hooks=spoil + list(hooks))


# ---- state handed to user code by reference: a tensor the user passes is copied when hooks are built

USER_TENSORS: dict[str, tuple[Any, Any, Any]] = {  # what -> (the user's tensor, hooks built from it, the later edit)
    "table(t)": (lambda: torch.arange(20).flip(0).float(), lambda g, t: p.replace(g, p.table(t)), lambda t: t.fill_(0)),
    "zero(bands=mask)": (lambda: torch.tensor([True] * 4 + [False] * 4), lambda g, t: p.zero(g, bands=t),
                         lambda t: t.fill_(True)),
    "replace(bands=mask)": (lambda: torch.tensor([True] * 4 + [False] * 4),
                            lambda g, t: p.replace(g, p.shift(2), bands=t), lambda t: t.fill_(True)),
}


@pytest.mark.parametrize(("name", "what"), [("tiny-gpt2", "table(t)"), ("tiny-llama", "table(t)"),
                                            ("tiny-llama", "zero(bands=mask)"), ("tiny-llama", "replace(bands=mask)")])
def test_a_users_later_edit_of_a_tensor_does_not_change_built_hooks(name: str, what: str) -> None:
    """``table(t)`` and a boolean ``bands=`` mask kept the user's tensor: editing it afterwards changed
    the hooks silently (0.90 in logits on tiny-gpt2's table, 8.8e-5 on a band mask)."""
    g = get_model(name)
    make, build, edit = USER_TENSORS[what]
    t = make()
    hooks = build(g, t)
    with torch.no_grad():
        before = g.run_with_hooks(IDS, fwd_hooks=list(hooks))
        edit(t)
        after = g.run_with_hooks(IDS, fwd_hooks=list(hooks))
    assert torch.equal(before, after)
