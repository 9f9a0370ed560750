"""Markdown of ``benchmarks/peers.py``'s results (one table per model, then pe-hooks over the bare bridge)."""

from __future__ import annotations

from typing import Any

TITLES = {
    "smollm2-135m": "SmolLM2-135M-Instruct (real weights): rotary",
    "minilm-l6": "all-MiniLM-L6-v2 (real encoder weights; its MLM head is random, seeded alike in every copy): learned positions",
    "gpt2-random": "GPT-2-small-shaped, **random init** (12 layers, d 768, byte vocabulary): learned positions",
    "tiny-gpt2": "tiny-gpt2 (random init)", "tiny-bert": "tiny-bert (random init)", "tiny-llama": "tiny-llama (random init)",
}


def _f(v: Any, spec: str) -> str:
    return "—" if v is None or v == "" else format(v, spec)


def _tokens(r: dict[str, Any]) -> str:
    if "tokens_match" not in r:
        return "—"
    return r["tokens_match"] + (f" (unedited: {r['no_edit_tokens']})" if "no_edit_tokens" in r else "")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| shape | edit | tool | median ms | × HF (bare) | max \\|Δ logits\\| vs HF edited by hand | "
             "(same, unedited bridge) | greedy tokens = reference | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['edit']} | {r['tool']} | {_f(r.get('median_ms'), '.1f')} | "
                     f"{_f(r.get('x_hf'), '.3f')} | {_f(r.get('max_abs_delta'), '.2e')} | {_f(r.get('no_edit_delta'), '.2e')} | "
                     f"{_tokens(r)} | {r.get('note', '')} |")
    return lines


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    """The bridge vs bare HF and vs nnsight, per model and shape."""
    out = []
    keys = dict.fromkeys((r["model"], r["shape"]) for r in rows)
    for model, shape in keys:
        here = [r for r in rows if r["model"] == model and r["shape"] == shape and "x_hf" in r]
        bridge = next((r["x_hf"] for r in here if r["tool"] == "TL bridge (bare)"), None)
        nns = [f"{r['x_hf']:.2f}× ({r['edit']})" for r in here if r["tool"] == "nnsight"]
        hand = [f"{r['x_hf']:.2f}× ({r['edit']})" for r in here if r["tool"] == "HF + torch hooks"]
        if bridge is not None:
            out.append(f"- {model} {shape}: bare bridge {bridge:.2f}× bare HF; HF + torch hooks {', '.join(hand) or '—'}; "
                       f"nnsight {', '.join(nns) or '—'}.")
    return out


TOOLS = ("HF + torch hooks", "nnsight", "pyvene", "pe-hooks (bridge)")


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if "x_hf" not in r:
        return "cannot" if "cannot" in r.get("note", "") else "not run"
    ok = r["max_abs_delta"] < 1e-4 and not r.get("note")
    return f"{r['x_hf']:.2f}× {'✓' if ok else '✗'} ({r['max_abs_delta']:.0e})"


def summary_table(rows: list[dict[str, Any]]) -> list[str]:
    """Tool x edit: ratio to bare HF, ✓/✗ (max |delta logits| vs the HF model edited by hand, < 1e-4)."""
    lines = ["| model | shape | edit | bare bridge | " + " | ".join(TOOLS) + " |", "|---" * (4 + len(TOOLS)) + "|"]
    for model, shape, edit in dict.fromkeys((r["model"], r["shape"], r["edit"]) for r in rows if r["edit"] != "—"):
        here = {r["tool"]: r for r in rows if r["model"] == model and r["shape"] == shape}
        bridge = here.get("TL bridge (bare)", {}).get("x_hf")
        cells = [_cell(next((r for r in rows if r["model"] == model and r["shape"] == shape and r["edit"] == edit
                             and r["tool"] == t), None)) for t in TOOLS]
        lines.append(f"| {model} | {shape} | {edit} | {_f(bridge, '.2f')}× | " + " | ".join(cells) + " |")
    return lines


def render(res: dict[str, Any]) -> str:
    rows = res["rows"]
    m = res["machine"]
    lines = [
        "# Hook overhead against the alternatives: HF + torch hooks, nnsight, pyvene, pe-hooks", "",
        f"Command: `{res['command']}` ({res['date']}; {m['cpu']}, torch threads {res['threads']}, torch {m['torch']}, "
        f"transformers {res['peers']['transformers']}, TransformerLens {res['peers']['transformer-lens']}, nnsight {res['peers']['nnsight']}, pyvene {res['peers']['pyvene']}). "
        f"Interleaved rounds (order rotating), 1×32 / 8×256 / generation: {res['rounds']}, after one warm-up call at 1×32 "
        "and none at 8×256 (a forward there takes seconds); each way's logits are checked on its first call. "
        "Ratios are medians of per-round ratios to the bare HF model (eager attention) in the same run. "
        "Correctness: max |Δ logits| against the HF model edited by hand (position table zeroed; `inv_freq` zeroed; "
        "`position_ids` + k); for generation, over the greedy steps up to the first token that differs from the "
        "reference's. pe-hooks runs on the TransformerLens 4 bridge as `pe_hooks.load_model` builds it "
        "(its input guard included), with `HookList.applied` around each call. The column *(same, unedited bridge)* is "
        "the bridge with no edit against the same reference: where it is as small as the tool's figure, the check "
        "cannot tell the edit from no edit. A uniform `shift(k)` of every position leaves RoPE logits unchanged "
        "(attention scores depend on t_q − t_k only), so its forward check is weak by construction; the hooks' "
        "tables are checked in tests/test_bench_peers.py, and generation (a prompt at k..k+s−1, then k+s, ...) is "
        "the same.", "",
    ]
    lines += [f"- {n}" for n in res.get("notes", [])] + ([""] if res.get("notes") else [])
    lines += ["## Summary: × bare HF, ✓ = max |Δ logits| < 1e-4 against the HF model edited by hand (figure in brackets)", "",
              *summary_table(rows), ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [f"## {TITLES.get(model, model)}", "", *_table([r for r in rows if r["model"] == model]), ""]
    lines += ["## pe-hooks over the bare bridge (its own cost)", "",
              "The pe-hooks row's × HF over the bare bridge's × HF (both medians of per-round ratios, same run). At 8×256 "
              "(2–3 rounds of a ~20 s forward on a shared machine) identical computations differ by up to ±10–15%.", "",
              "| model | shape | edit | × bare bridge |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['shape']} | {r['edit']} | {r['x_bridge']:.3f} |" for r in res["pe_hooks_over_bridge"]]
    lines += ["", "## Attaching and detaching the hooks (no forward)", "",
              "`HookList.applied` against TransformerLens' own `model.hooks(fwd_hooks=...)`, which `run_with_hooks` "
              "wraps around its forward (it rebuilds the bridge's alias map on every call):", "",
              "| model | edit | hooks | way | median ms |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['edit']} | {r['hooks']} | {r['way']} | {r['median_ms']:.2f} |" for r in res.get("attach_detach", [])]
    lines += ["", "## The bridge against bare HF and nnsight", "", *_summary(rows), ""]
    return "\n".join(lines) + "\n"
