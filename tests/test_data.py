"""Data layer: corpus, tokenisation with real positions, activation streaming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pe_hooks import DataError, inspect
from pe_hooks.data import load_data, positions_from_mask, stdlib_docstrings, stream_activations
from tests.conftest import get_model


def test_corpus_is_deterministic_and_large() -> None:
    a = stdlib_docstrings()
    assert len(a) > 300
    assert a == stdlib_docstrings()
    assert all(len(t) >= 300 for t in a)


def test_load_data_default_corpus_has_bos_at_position_zero() -> None:
    model = get_model("tiny-llama")
    td = load_data(model, None, seq_len=32, n_seqs=10)
    assert td.tokens.shape == (10, 32)
    assert torch.equal(td.positions[0], torch.arange(32))
    assert int(td.tokens[0, 0]) == model.tokenizer.bos_token_id  # type: ignore[attr-defined]
    # shuffling with another seed picks other documents
    other = load_data(model, None, seq_len=32, n_seqs=10, seed=1)
    assert not torch.equal(td.tokens, other.tokens)


def test_no_bos_when_model_does_not_prepend() -> None:
    model = get_model("tiny-neox")
    assert not inspect(model).prepend_bos
    td = load_data(model, ["x" * 100], seq_len=16)
    assert td.texts is not None
    assert int(td.tokens[0, 0]) == model.tokenizer("x", add_special_tokens=False)["input_ids"][0]  # type: ignore[attr-defined]


def test_text_file_and_errors(tmp_path: Path) -> None:
    model = get_model("tiny-gpt2")
    f = tmp_path / "t.txt"
    f.write_text("first paragraph " * 20 + "\n\n" + "short\n\n" + "second paragraph " * 20)
    td = load_data(model, f, seq_len=40)
    assert len(td) == 2  # the short paragraph is skipped
    with pytest.raises(DataError, match="lower seq_len"):
        load_data(model, ["tiny"], seq_len=40)
    with pytest.raises(DataError, match="exceeds the context"):
        load_data(model, None, seq_len=10_000)
    with pytest.raises(DataError, match="empty"):
        load_data(model, [], seq_len=8)
    with pytest.raises(DataError, match="not an existing file"):
        load_data(model, "no/such/file.txt")
    with pytest.raises(DataError, match="integer ids"):
        load_data(model, torch.zeros(2, 4))
    with pytest.raises(DataError, match="only 2 texts"):
        load_data(model, f, seq_len=40, n_seqs=5)


def test_positions_from_left_padding() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_stream_matches_run_with_cache_and_stops_early() -> None:
    model = get_model("tiny-gpt2")
    td = load_data(model, None, seq_len=24, n_seqs=5)
    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]
    got = {n: [] for n in names}  # type: ignore[var-annotated]
    for batch in stream_activations(model, td, names, batch_size=2, progress=False):
        for n in names:
            got[n].append(batch.acts[n])
    _, cache = model.run_with_cache(td.tokens, names_filter=lambda n: n in names)  # type: ignore[attr-defined]
    for n in names:
        assert torch.allclose(torch.cat(got[n]), cache[n], atol=1e-6)


def test_stream_runs_intervention_hooks_first_and_cleans_up() -> None:
    model = get_model("tiny-gpt2")
    td = load_data(model, None, seq_len=16, n_seqs=2)

    def kill(t: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.zeros_like(t)

    batches = list(stream_activations(model, td, ["hook_pos_embed"], hooks=[("hook_pos_embed", kill)], progress=False))
    assert float(batches[0].acts["hook_pos_embed"].abs().max()) == 0.0


def test_stream_errors() -> None:
    model = get_model("tiny-gpt2")
    td = load_data(model, None, seq_len=16, n_seqs=2)
    with pytest.raises(KeyError, match="do not exist"):
        next(iter(stream_activations(model, td, ["blocks.9.hook_resid_pre"], progress=False)))

    def nan(t: torch.Tensor, hook: object) -> torch.Tensor:
        return t * float("nan")

    with pytest.raises(DataError, match="non-finite"):
        list(stream_activations(model, td, ["blocks.1.hook_resid_pre"], hooks=[("hook_embed", nan)], progress=False))
