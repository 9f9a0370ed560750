"""benchmarks/peers.py runs on tiny models with or without nnsight/pyvene installed (no timing assertions).

Correctness is asserted: each way's logits against the HF model edited by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from benchmarks import peer_tools as pt
from benchmarks.peers import main

EXACT = {"HF + torch hooks", "pe-hooks (bridge)", "nnsight", "pyvene"}


def test_quick_peers_run_writes_a_checked_report(tmp_path: Path) -> None:
    main(["--quick", "--models", "tiny-gpt2", "--rounds", "1", "--big-rounds", "1", "--gen-rounds", "1", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "peers-quick.json").read_text())
    md = (tmp_path / "peers-quick.md").read_text()
    tools = {r["tool"] for r in res["rows"]}
    assert {"HF (bare)", "TL bridge (bare)", "HF + torch hooks", "pe-hooks (bridge)", "nnsight", "pyvene"} <= tools
    for r in res["rows"]:
        if r["tool"] in EXACT and r["edit"] != "—":
            if importlib.util.find_spec(r["tool"]) is None and r["tool"] in pt.PEERS:
                assert "not installed" in r["note"] and "pip install" in r["note"] and "x_hf" not in r
                continue
            assert r["max_abs_delta"] < 1e-5, r  # zeroed positions, every way, vs the HF model with wpe zeroed
            assert r["x_hf"] > 0
            if r["shape"].startswith("generate"):
                assert r["tokens_match"] == "4/4"
    assert res["pe_hooks_over_bridge"] and "× bare bridge" in md and "tiny-gpt2" in md


def test_hand_reference_and_pe_hooks_agree_on_rotary_and_pyvene_edits_only_cos() -> None:
    import pe_hooks as p
    from pe_hooks.models import load_hf

    ids = torch.randint(3, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    zero, shift = pt.Edit("zero rotary", "model.rotary_emb"), pt.Edit("shift", "model.rotary_emb", k=3)
    base, _ = load_hf("tiny-llama")
    model = p.load_model("tiny-llama")
    with torch.no_grad():
        refs = {}
        for edit in (zero, shift):
            refs[edit.key] = ref = pt.reference(edit, base if edit.key == "shift" else load_hf("tiny-llama")[0])[0](ids)
            for way in (pt.by_hand(edit, base), pt.with_pe_hooks(edit, model, causal=True)):
                assert way.forward is not None
                assert float((way.forward(ids) - ref).abs().max()) < 1e-5, (edit, way.tool)
        assert float((base(ids).logits - refs["zero rotary"]).abs().max()) > 1e-3  # zero rotary changes the logits
        # a uniform shift leaves RoPE logits unchanged (scores depend on t_q - t_k only): check the tables
        seen: dict[str, torch.Tensor] = {}
        rot = base.model.rotary_emb
        h = rot.register_forward_hook(lambda m, a, out: seen.update(cos=out[0]))
        try:
            pt.by_hand(shift, base).forward(ids)  # type: ignore[misc]
        finally:
            h.remove()
        x = torch.zeros(1, 12, 64)
        assert torch.equal(seen["cos"], rot(x, torch.arange(12)[None] + 3)[0])
        assert not torch.equal(seen["cos"], rot(x, torch.arange(12)[None])[0])
        assert pt.with_pyvene(shift, base, causal=True).forward is None  # not expressible: a stated reason
        if importlib.util.find_spec("pyvene") is None:
            pytest.skip("pyvene not installed: " + pt.INSTALL)
        way = pt.with_pyvene(zero, load_hf("tiny-llama")[0], causal=True)
        assert way.forward is not None and "cos" in way.wrong
        ref = pt.reference(zero, load_hf("tiny-llama")[0])[0](ids)
        assert float((way.forward(ids) - ref).abs().max()) > 1e-3  # a wrong edit, and the report says so
