"""Learned-position verbs vs HF models with W_pos edited by hand.

tiny-gpt2 / tiny-bert: logits (the tiny BERT's MLM head is seeded, identical in both copies).
minilm-l6: final hidden states (its MLM head is random per load). Tolerance 1e-5 absolute; 2e-4 for
minilm-l6 (6 real layers, HF's SDPA vs the bridge's eager attention: float32 rounding grows through
the layers -- measured 9.4e-5 for ``remove`` on an AVX-512 CPU, on outputs of magnitude up to 6.4,
1.8e-6 for the unedited model; every edit changes the output by far more, see the ``base`` checks).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pe_hooks import (
    HookList,
    SchemeError,
    apply_hooks,
    constant,
    project_out,
    remove,
    replace,
    reverse,
    shift,
    shuffle,
    zero,
)
from pe_hooks.interventions.learned import w_pos_components
from pe_hooks.models import load_hf
from tests.conftest import get_model

ATOL = 1e-5
ATOL_REAL = {"minilm-l6": 2e-4}
LEARNED = ["tiny-gpt2", "tiny-bert", "minilm-l6"]


def _wpe(hf: torch.nn.Module) -> torch.Tensor:
    base = getattr(hf, "transformer", None) or hf.bert  # type: ignore[attr-defined]
    emb = getattr(base, "wpe", None)
    return (emb if emb is not None else base.embeddings.position_embeddings).weight  # type: ignore[union-attr]


def _ids(tok: object) -> torch.Tensor:
    return tok(["learned positions are added to every token", "a second, different sequence of text"],  # type: ignore[operator]
               return_tensors="pt", padding=True, truncation=True, max_length=20).input_ids[:, :16]


def _ref_out(name: str, hf: torch.nn.Module, ids: torch.Tensor, **kw: object) -> torch.Tensor:
    with torch.no_grad():
        if name == "minilm-l6":
            return hf(ids, output_hidden_states=True, **kw).hidden_states[-1]  # type: ignore[operator]
        return hf(ids, **kw).logits  # type: ignore[operator]


def _bridge_out(name: str, hooks: list, ids: torch.Tensor) -> torch.Tensor:
    model = get_model(name)
    with apply_hooks(model, hooks), torch.no_grad():
        if name == "minilm-l6":
            _, cache = model.run_with_cache(ids, names_filter=lambda n: n == "blocks.5.hook_resid_post")  # type: ignore[attr-defined]
            return cache["blocks.5.hook_resid_post"]
        return model(ids)  # type: ignore[operator]


def _close(got: torch.Tensor, want: torch.Tensor, name: str = "tiny") -> None:
    atol = ATOL_REAL.get(name, ATOL)
    diff = float((got - want).abs().max())
    assert diff <= atol, f"max |diff| {diff:.2e} > {atol:.0e}"


@pytest.mark.parametrize("name", LEARNED)
def test_baseline_agrees(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    _close(_bridge_out(name, [], ids), _ref_out(name, ref, ids), name)


@pytest.mark.parametrize("name", LEARNED)
def test_zero_equals_w_pos_zeroed(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    base = _ref_out(name, ref, ids)
    with torch.no_grad():
        _wpe(ref).zero_()
    want = _ref_out(name, ref, ids)
    got = _bridge_out(name, zero(get_model(name)), ids)
    _close(got, want, name)
    assert float((got - base).abs().max()) > 1e-3


@pytest.mark.parametrize("name", LEARNED)
def test_remove_equals_mean_row(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    n = ids.shape[1]
    with torch.no_grad():
        w = _wpe(ref)
        w[:] = w[:n].mean(0)
    _close(_bridge_out(name, remove(get_model(name)), ids), _ref_out(name, ref, ids), name)


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize(
    "pmap,fn",
    [
        (shift(3), lambda t: t + 3),
        (constant(5), lambda t: torch.full_like(t, 5)),
        (reverse(16), lambda t: 15 - t),
        (shuffle(32, seed=2), lambda t: shuffle(32, seed=2)(t).long()),
    ],
    ids=["shift", "constant", "reverse", "shuffle"],
)
def test_replace_equals_table_rows_mapped(name: str, pmap: object, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``replace(f)`` = the table's row f(t) added at position t: the HF table's rows rewritten by hand.

    Not ``position_ids=f(t)``: from transformers 5.25, BERT's mask builder also reads ``position_ids``
    as packed-sequence boundaries (``masking_utils.find_packed_sequence_indices``), so non-contiguous
    ids there change the attention mask as well as the positions (docs/upstream.md).
    """
    ref, tok = load_hf(name)
    ids = _ids(tok)
    with torch.no_grad():
        w = _wpe(ref)
        w[: ids.shape[1]] = w.clone()[fn(torch.arange(ids.shape[1]))]
    want = _ref_out(name, ref, ids)
    _close(_bridge_out(name, replace(get_model(name), pmap), ids), want, name)  # type: ignore[arg-type]


def test_replace_equals_position_ids_on_gpt2() -> None:
    """The same edit through HF's own ``position_ids`` argument, where it means positions only."""
    ref, tok = load_hf("tiny-gpt2")
    ids = _ids(tok)
    pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    want = _ref_out("tiny-gpt2", ref, ids, position_ids=15 - pos)
    _close(_bridge_out("tiny-gpt2", replace(get_model("tiny-gpt2"), reverse(16)), ids), want)


@pytest.mark.parametrize("name", LEARNED)
def test_project_out_pcs_equals_w_pos_projected(name: str) -> None:
    ref, tok = load_hf(name)
    ids = _ids(tok)
    model = get_model(name)
    hooks = project_out(model, k=4)
    basis = hooks.basis  # type: ignore[attr-defined]
    assert basis.shape[0] == 4
    with torch.no_grad():
        w = _wpe(ref)
        w[:] = w - (w @ basis.T) @ basis
    _close(_bridge_out(name, hooks, ids), _ref_out(name, ref, ids), name)


def test_project_out_user_basis_and_pcs_of_helix() -> None:
    model = get_model("tiny-gpt2")
    ref, tok = load_hf("tiny-gpt2")
    ids = _ids(tok)
    basis = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    q = torch.linalg.qr(basis.T)[0].T
    with torch.no_grad():
        w = _wpe(ref)
        w[:] = w - (w @ q.T) @ q
    _close(_bridge_out("tiny-gpt2", project_out(model, basis), ids), _ref_out("tiny-gpt2", ref, ids))
    # planted: rows on a 3-d helix + tiny noise -> the top 3 PCs span the helix plane
    t = torch.arange(1, 200, dtype=torch.float32)
    helix = torch.stack([torch.cos(t / 20), torch.sin(t / 20), t / 200], 1)
    dirs = torch.linalg.qr(torch.randn(64, 3, generator=torch.Generator().manual_seed(1)))[0].T
    w_pos = torch.cat([torch.zeros(1, 64), helix @ dirs + 1e-4 * torch.randn(199, 64)])
    pcs = w_pos_components(w_pos, k=None, var=0.99)
    assert pcs.shape[0] == 3
    overlap = torch.linalg.svdvals(pcs @ dirs.T)
    assert float(overlap.min()) > 0.999


@pytest.mark.kv_cache
def test_generation_with_cache_gets_real_positions() -> None:
    model = get_model("tiny-gpt2")
    prompt = torch.tensor([[5, 40, 52, 61, 77, 83]])
    for hooks in (replace(model, shuffle(64, seed=0)), remove(model, reference=range(32)), zero(model)):
        with hooks.applied(model), torch.no_grad():
            out = model.generate(prompt, max_new_tokens=5, do_sample=False, verbose=False,  # type: ignore[attr-defined]
                                 use_past_kv_cache=True, output_logits=True, stop_at_eos=False)
            full = model(out.sequences)  # type: ignore[operator]
        _close(torch.stack(out.logits, 1), full[:, prompt.shape[1] - 1 : -1])


def test_exempt_first_keeps_row_zero() -> None:
    model = get_model("tiny-gpt2")
    ref, tok = load_hf("tiny-gpt2")
    ids = _ids(tok)
    with torch.no_grad():
        _wpe(ref)[1:] = 0.0
    _close(_bridge_out("tiny-gpt2", zero(model, exempt_first=True), ids), _ref_out("tiny-gpt2", ref, ids))


def test_errors() -> None:
    with pytest.raises(SchemeError, match="never fires on rotary models; use site='rotary'"):
        zero(get_model("tiny-llama"), site="pos_embed")
    with pytest.raises(SchemeError, match="site='alibi'"):
        zero(get_model("tiny-bloom"), site="pos_embed")
    with pytest.raises(SchemeError, match="not per head"):
        zero(get_model("tiny-gpt2"), heads=[0])
    with pytest.raises(SchemeError, match="before layer 0"):
        zero(get_model("tiny-gpt2"), layers=[1])
    with pytest.raises(SchemeError, match=r"shape \[k, 64\]"):
        project_out(get_model("tiny-gpt2"), torch.zeros(2, 10))
    model = get_model("tiny-gpt2")
    with pytest.raises(SchemeError, match="outside 0..255"), shift(300) and replace(model, shift(300)).applied(model):
        model(torch.tensor([[1, 2, 3]]))  # type: ignore[operator]


def test_hooklist_is_a_list_of_pairs() -> None:
    h = zero(get_model("tiny-gpt2"))
    assert isinstance(h, HookList) and isinstance(h, list)
    assert all(isinstance(n, str) and callable(f) for n, f in h)
