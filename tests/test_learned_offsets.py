"""Issue 25: learned position tables with offsets (OPT +2, RoBERTa padding_idx + 1), GPT-Neo's
local layers, GPTBigCode and OpenAI-GPT, each vs the HF model edited by hand.

Each architecture is built tiny from its transformers config (``models.tiny.build_arch``: 4 layers,
GQA where the config has it, GPT-Neo with a local window of 5 on layers 1 and 3), twice with one
seed: the bridge, and a plain HF reference whose position table rows are edited by hand
(``cli.arch_check.learned_check``: rows ``offset..offset+n-1`` zeroed, averaged, re-indexed by
``shift(3)`` / ``reverse(12)``, projected off their top-3 principal directions). A ``replace(shift(k))``
moves the *position*: the row read is ``offset + t + k``, never ``t + k``. Tolerance 1e-5 on logits
(measured: <= 3e-7); every edit moves the reference's logits by >= 1e-4 of their largest value
(measured: 0.2 to 1.2), so each check can fail.
"""

from __future__ import annotations

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import IDS, TOL, build_pair, learned_check, passed
from pe_hooks.models.kv_check import check_kv_cache

#: name -> (row offset of position 0, positions read from pos_embed.hook_in (else matched rows))
OFFSETS = {
    "OPTForCausalLM": (2, False),  # hook_in carries the attention mask; HF reads row t + 2
    "RobertaForMaskedLM": (3, True),  # ids = t + padding_idx + 1
    "GPTNeoForCausalLM": (0, True),
    "GPTBigCodeForCausalLM": (0, True),
    "OpenAIGPTLMHeadModel": (0, True),
}


@pytest.mark.parametrize("name", list(OFFSETS))
def test_table_verbs_vs_hf_rows_edited(name: str) -> None:
    g, ref = build_pair(name)
    s = p.inspect(g)
    (table,) = s.family.tables
    assert (table.offset, table.ids_index, table.trainable) == (*OFFSETS[name], True), str(s)
    assert s.w_pos_shape == (table.rows - table.offset, 64)
    assert f"row t + {table.offset}" in s.summary()
    result = learned_check(g, ref)
    ok = passed(result)
    assert set(ok) == {"bare", "zero", "remove", "replace", "reverse", "project_out"}
    assert all(ok.values()), {k: f"{result[k]:.2g} (effect {result.get(k + ':effect', 1):.2g})" for k in ok}


def _hf(ref: torch.nn.Module, ids: torch.Tensor, **kw: object) -> torch.Tensor:
    with torch.no_grad():
        return ref(ids, **kw).logits  # type: ignore[no-any-return, operator]


@pytest.mark.parametrize(("name", "ids_offset"), [("OPTForCausalLM", 0), ("RobertaForMaskedLM", 3)])
def test_shift_equals_hf_position_ids(name: str, ids_offset: int) -> None:
    """The same check through HF's own ``position_ids`` (OPT adds its offset to them; RoBERTa's
    ``position_ids`` are rows of the table, so they carry the padding offset themselves)."""
    g, ref = build_pair(name)
    pos = torch.arange(IDS.shape[1])[None] + ids_offset
    want = _hf(ref, IDS, position_ids=pos + 3)
    assert float((want - _hf(ref, IDS, position_ids=pos)).abs().max()) > 0.1  # the shift moves the logits
    with torch.no_grad(), p.replace(g, p.shift(3)).applied(g):
        got = g(IDS)
    assert float((got - want).abs().max()) <= TOL


def _padded(pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    row = torch.tensor([[1, 40, 52, 61, 77, 90, 33]])
    other = torch.tensor([[1, 9, 8, 7, 6, 5, 4, 3, 2, 11]])
    batch = torch.cat([torch.cat([torch.full((1, 3), pad), row], 1), other])
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    return row, batch, mask


@pytest.mark.parametrize("name", ["OPTForCausalLM", "RobertaForMaskedLM"])
def test_left_padded_row_equals_the_row_alone(name: str) -> None:
    """OPT and RoBERTa derive positions from the mask / the pad tokens: a left-padded row's real
    tokens keep positions 0..n-1, so each verb must give them exactly what the row gets alone
    (the pad tokens' rows, before position 0, are left alone)."""
    g, ref = build_pair(name)
    row, batch, mask = _padded(int(ref.config.pad_token_id))
    with torch.no_grad():
        plain = g(row)
    for hooks in (p.remove(g), p.replace(g, p.shift(2)), p.zero(g), p.project_out(g, k=3)):
        with torch.no_grad(), hooks.applied(g):
            alone = g(row)
            both = g(batch, attention_mask=mask)
        assert float((alone - plain).abs().max()) > 1e-3, hooks.label  # the verb does something
        assert float((both[0, 3:] - alone[0]).abs().max()) <= TOL, hooks.label


@pytest.mark.kv_cache
def test_opt_cached_decoding_reads_each_steps_position() -> None:
    """Cached steps see one token whose row (matched in the table) is its real position + 2."""
    g, _ = build_pair("OPTForCausalLM")
    with p.replace(g, p.shift(2)).applied(g):
        assert check_kv_cache(g, refresh=True).max_abs_error <= 1e-4


def test_shift_past_the_table_is_refused_by_position_count() -> None:
    """OPT holds 256 positions in 258 rows: a shift to position 256 is refused (not row 256 read)."""
    g, _ = build_pair("OPTForCausalLM")
    with pytest.raises(p.SchemeError, match=r"outside 0\.\.255"), torch.no_grad(), p.replace(g, p.shift(250)).applied(g):
        g(IDS)
    with pytest.raises(p.SchemeError, match="stacks="):
        p.zero(g, stacks="decoder")
