"""Hook overhead against what users would pick instead: HF + torch hooks by hand, nnsight, pyvene, pe-hooks.

    python -m benchmarks.peers                 # writes benchmarks/results/peers.{md,json}
    python -m benchmarks.peers --quick         # a smoke run on tiny random-init models (-> peers-quick.*)
    python -m benchmarks.peers --models smollm2-135m

The same edit on the same model, each way (``benchmarks/peer_tools.py``): zero learned positions
(a random-init GPT-2-small-shaped model, and real all-MiniLM-L6-v2), zero rotary and
``replace(shift(3))`` (real SmolLM2-135M-Instruct). For each: forward latency at batch 1 x 32 tokens
and 8 x 256, and 32-token greedy generation (causal models), as medians of per-round ratios to the
bare HF forward (or generation) in the same run, conditions interleaved and rotating after a
warm-up (``benchmarks.harness.interleaved``); beside each, max |delta logits| against the HF model
edited by hand. The bare TransformerLens bridge is timed too: pe-hooks' own cost is its ratio to it.

nnsight and pyvene are optional (``pip install -e '.[bench]'`` or ``make bench``); missing, their
rows say so and the rest runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import peer_tools as pt
from benchmarks.harness import interleaved, machine

OUT = Path(__file__).parent / "results"
PROMPT = "The most surprising thing about the ocean is"


@dataclass(frozen=True)
class ModelCase:
    key: str
    title: str
    name: str  # the pe-hooks / load_hf name ("" for the GPT-2-small-shaped model)
    edits: tuple[pt.Edit, ...]
    causal: bool


def _cases(quick: bool) -> list[ModelCase]:
    wpe, bert, rot = "transformer.wpe", "bert.embeddings.position_embeddings", "model.rotary_emb"
    rotary = (pt.Edit("zero rotary", rot), pt.Edit("shift", rot, k=3))
    if quick:
        return [ModelCase("tiny-gpt2", "tiny-gpt2 (random init)", "tiny-gpt2", (pt.Edit("zero positions", wpe),), True),
                ModelCase("tiny-bert", "tiny-bert (random init)", "tiny-bert", (pt.Edit("zero positions", bert),), False),
                ModelCase("tiny-llama", "tiny-llama (random init)", "tiny-llama", rotary, True)]
    return [ModelCase("smollm2-135m", "SmolLM2-135M-Instruct (real weights)", "smollm2-135m", rotary, True),
            ModelCase("minilm-l6", "all-MiniLM-L6-v2 (real encoder weights)", "minilm-l6",
                      (pt.Edit("zero positions", bert),), False),
            ModelCase("gpt2-random", "GPT-2-small-shaped, random init (12 layers, d 768)", "",
                      (pt.Edit("zero positions", wpe),), True)]


def _fresh_hf(case: ModelCase) -> tuple[Any, Any]:
    """A new HF instance with the same weights every call (MiniLM's random MLM head is seeded)."""
    from benchmarks.cases import gpt2_small_shaped_hf
    from pe_hooks.models import load_hf

    torch.manual_seed(0)
    hf, tok = gpt2_small_shaped_hf() if not case.name else load_hf(case.name)
    hf.set_attn_implementation("eager")
    if case.causal:  # greedy to the full length, like the bridge's stop_at_eos=False
        hf.generation_config.eos_token_id = None
        hf.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    return hf.eval(), tok


def _bridge(case: ModelCase, guarded: bool) -> Any:
    """The TransformerLens bridge; ``guarded``: loaded by pe-hooks (``load_model``, its input guard on)."""
    import pe_hooks as p
    from pe_hooks.models import bridge_from_hf

    if guarded and case.name:
        torch.manual_seed(0)
        return p.load_model(case.name)
    hf, tok = _fresh_hf(case)
    bridge = bridge_from_hf(hf, tok, name=case.key)
    return p.load_model(bridge) if guarded else bridge


@dataclass
class Setup:
    """Everything timed on one model: the baselines, the references and the ways of each edit."""

    case: ModelCase
    tok: Any
    base_fwd: pt.Forward
    base_gen: pt.Generate
    bridge_fwd: pt.Forward
    bridge_gen: pt.Generate
    refs: dict[str, tuple[pt.Forward, pt.Generate]]
    ways: dict[str, list[pt.Way]]
    pe_model: Any


def build(case: ModelCase) -> Setup:
    base, tok = _fresh_hf(case)
    bare_bridge, pe_bridge = _bridge(case, guarded=False), _bridge(case, guarded=True)
    refs, ways = {}, {}
    for edit in case.edits:
        refs[edit.key] = pt.reference(edit, base if edit.key == "shift" else _fresh_hf(case)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ways[edit.key] = [pt.by_hand(edit, base), pt.with_nnsight(edit, _fresh_hf(case)[0], tok, case.causal),
                              pt.with_pyvene(edit, _fresh_hf(case)[0], case.causal),
                              pt.with_pe_hooks(edit, pe_bridge, case.causal)]
    return Setup(case, tok, pt.hf_forward(base), pt.hf_generate(base), pt.bridge_forward(bare_bridge),
                 pt.bridge_generate(bare_bridge), refs, ways, pe_bridge)


def attach_rows(s: Setup, rounds: int = 30) -> list[dict[str, Any]]:
    """Attach + detach only (no forward): ``HookList.applied`` against TransformerLens' own ``model.hooks``
    (what ``run_with_hooks`` does around its forward: it rebuilds the alias map on each call)."""
    rows = []
    for edit in s.case.edits:
        model, hooks = s.pe_model, pt.pe_hooks_hooks(edit, s.pe_model)

        def applied(model: Any = model, hooks: Any = hooks) -> None:
            with hooks.applied(model):
                pass

        def tl_hooks(model: Any = model, hooks: Any = hooks) -> None:
            with model.hooks(fwd_hooks=hooks):
                pass

        timed = interleaved({"HookList.applied": applied, "model.hooks (TL)": tl_hooks}, rounds=rounds, warmup=2)
        rows += [{"model": s.case.key, "edit": edit.title, "hooks": len(hooks), "way": r["condition"],
                  "median_ms": r["median_ms"]} for r in timed]
    return rows


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _checked(f: pt.Forward, ids: torch.Tensor, ref: torch.Tensor, row: dict[str, Any], key: str) -> Callable[[], None]:
    """``f(ids)``; its first call also records max |delta| against ``ref`` in ``row[key]`` (the
    warm-up at 1 x 32; at 8 x 256, where a forward takes seconds, the first timed round: a
    max-abs over the logits is well under 1% of that forward)."""
    def run() -> None:
        out = f(ids)
        if key not in row:
            row[key] = _max_abs(out, ref)
    return run


def forward_rows(s: Setup, batch: int, seq: int, rounds: int) -> list[dict[str, Any]]:
    """Interleaved timing of every way that runs, each checked against the HF model edited by hand."""
    vocab = int(s.base_fwd(torch.zeros(1, 1, dtype=torch.long)).shape[-1])
    ids = torch.randint(3, min(vocab, 20000), (batch, seq), generator=torch.Generator().manual_seed(batch * seq))
    conds: dict[str, Callable[[], object]] = {"HF, no edit": lambda: s.base_fwd(ids)}
    info: dict[str, dict[str, Any]] = {"HF, no edit": {"edit": "—", "tool": "HF (bare)"},
                                       "bridge, no edit": {"edit": "—", "tool": "TL bridge (bare)"}}
    refs = {e.key: s.refs[e.key][0](ids) for e in s.case.edits}
    first = s.case.edits[0].key  # the unedited bridge is checked against each edit's reference
    conds["bridge, no edit"] = _checked(s.bridge_fwd, ids, refs[first], info["bridge, no edit"], f"delta_{first}")
    for edit in s.case.edits:
        for way in s.ways[edit.key]:
            name = f"{edit.title} / {way.tool}"
            info[name] = {"edit": edit.title, "tool": way.tool, "note": way.why or way.wrong, "ref": edit.key}
            if way.forward is not None:
                conds[name] = _checked(way.forward, ids, refs[edit.key], info[name], "max_abs_delta")
    timed = interleaved(conds, rounds=rounds, warmup=1 if batch * seq <= 512 else 0, baseline="HF, no edit")
    for edit in s.case.edits[1:]:  # the unedited bridge against the other references (no timing)
        info["bridge, no edit"][f"delta_{edit.key}"] = _max_abs(s.bridge_fwd(ids), refs[edit.key])
    for row in info.values():
        if "ref" in row:
            row["no_edit_delta"] = info["bridge, no edit"][f"delta_{row.pop('ref')}"]
    return _merge(timed, info, s.case.key, f"{batch}x{seq}")


def generation_rows(s: Setup, n: int, rounds: int) -> list[dict[str, Any]]:
    ids = s.tok(PROMPT, return_tensors="pt").input_ids
    conds: dict[str, Callable[[], object]] = {"HF, no edit": lambda: s.base_gen(ids, n), "bridge, no edit": lambda: s.bridge_gen(ids, n)}
    info: dict[str, dict[str, Any]] = {"HF, no edit": {"edit": "—", "tool": "HF (bare)"},
                                       "bridge, no edit": {"edit": "—", "tool": "TL bridge (bare)"}}
    for edit in s.case.edits:
        ref_tokens, ref_logits = s.refs[edit.key][1](ids, n)
        unedited = _gen_agreement(s.bridge_gen(ids, n), ref_tokens, ref_logits, ids.shape[1])
        for way in s.ways[edit.key]:
            row: dict[str, Any] = {"edit": edit.title, "tool": way.tool, "note": way.why or way.wrong,
                                   "no_edit_delta": unedited["max_abs_delta"], "no_edit_tokens": unedited["tokens_match"]}
            if way.generate is not None:
                row.update(_gen_agreement(way.generate(ids, n), ref_tokens, ref_logits, ids.shape[1]))
                conds[f"{edit.title} / {way.tool}"] = lambda g=way.generate: g(ids, n)
            elif way.forward is not None:
                row["note"] = "no generation (encoder)" if not s.case.causal else row["note"]
            info[f"{edit.title} / {way.tool}"] = row
    timed = interleaved(conds, rounds=rounds, warmup=0, baseline="HF, no edit")
    return _merge(timed, info, s.case.key, f"generate {n}")


def _gen_agreement(got: tuple[torch.Tensor, torch.Tensor], ref_tokens: torch.Tensor, ref_logits: torch.Tensor,
                   prompt_len: int) -> dict[str, Any]:
    """Tokens equal to the reference's, and max |delta logits| over the steps up to the first different token."""
    tokens, logits = got
    new, ref_new = tokens[0, prompt_len:], ref_tokens[0, prompt_len:]
    same = int((new == ref_new).long().cumprod(0).sum())
    steps = min(same + 1, len(ref_new))
    return {"max_abs_delta": _max_abs(logits[:steps], ref_logits[:steps]), "tokens_match": f"{same}/{len(ref_new)}"}


def _merge(timed: list[dict[str, Any]], info: dict[str, dict[str, Any]], model: str, shape: str) -> list[dict[str, Any]]:
    by_name = {str(r["condition"]): r for r in timed}
    rows = []
    for name, row in info.items():
        t = by_name.get(name, {})
        rows.append({"model": model, "shape": shape, **row,
                     **({"median_ms": t["median_ms"], "iqr_ms": t["iqr_ms"], "x_hf": t["ratio"]} if t else {})})
    return rows


def bridge_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pe-hooks over the bare bridge, per model, shape and edit (ratio of the two medians of ratios to HF)."""
    out = []
    for r in rows:
        if r["tool"] != "pe-hooks (bridge)" or "x_hf" not in r:
            continue
        bare = next(b for b in rows if b["model"] == r["model"] and b["shape"] == r["shape"] and b["tool"] == "TL bridge (bare)")
        out.append({"model": r["model"], "shape": r["shape"], "edit": r["edit"], "x_bridge": r["x_hf"] / bare["x_hf"]})
    return out


def run(cases: list[ModelCase], *, quick: bool, rounds: int, big_rounds: int, gen_rounds: int, new_tokens: int,
        checkpoint: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    shapes = [(1, 8), (2, 16)] if quick else [(1, 32), (8, 256)]
    rows: list[dict[str, Any]] = []
    attach: list[dict[str, Any]] = []
    for case in cases:
        s = build(case)
        attach += attach_rows(s)
        with torch.no_grad():
            for batch, seq in shapes:
                rows += forward_rows(s, batch, seq, rounds if batch * seq <= 512 else big_rounds)
                print(f"{case.key} {batch}x{seq} done ({time.strftime('%H:%M:%S')})", flush=True)
                checkpoint(rows, attach)
            if case.causal:
                rows += generation_rows(s, new_tokens, gen_rounds)
                print(f"{case.key} generation done ({time.strftime('%H:%M:%S')})", flush=True)
                checkpoint(rows, attach)
        del s
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny random-init models, few rounds (a smoke run)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine 2 threads oversubscribe and a tiny forward takes 0.5 s)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds at 1 x 32 (default 15; --quick: 3)")
    ap.add_argument("--big-rounds", type=int,
                    help="interleaved rounds at 8 x 256 (default 2, no warm-up: a forward takes seconds; --quick: 2)")
    ap.add_argument("--gen-rounds", type=int, help="interleaved rounds of generation (default 5; --quick: 2)")
    ap.add_argument("--models", default="", help="comma-separated subset of the model keys")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = _cases(args.quick)
    if args.models:
        want = args.models.split(",")
        unknown = sorted(set(want) - {c.key for c in cases})
        if unknown:
            ap.error(f"unknown --models {','.join(unknown)}; choose from {','.join(c.key for c in cases)}")
        cases = [c for c in cases if c.key in want]
    defaults = (3, 2, 2) if args.quick else (15, 2, 5)
    rounds = tuple(d if a is None else a for a, d in zip((args.rounds, args.big_rounds, args.gen_rounds), defaults))
    if min(rounds) < 1:
        ap.error("--rounds, --big-rounds and --gen-rounds must be >= 1")
    name = "peers-quick" if args.quick else "peers"
    meta = {"command": " ".join(["python -m benchmarks.peers", *(sys.argv[1:] if argv is None else argv)]), "machine": machine(),
            "threads": args.threads, "rounds": rounds, "date": time.strftime("%Y-%m-%d %H:%M"),
            "peers": {n: _version(n) for n in (*pt.PEERS, "transformer-lens", "transformers")}}
    for n in pt.PEERS:
        if meta["peers"][n] == "not installed":  # type: ignore[index]
            print(f"note: {pt.missing_note(n)}; its rows say so and the rest runs", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)

    def checkpoint(rows: list[dict[str, Any]], attach: list[dict[str, Any]]) -> None:
        res = {**meta, "rows": rows, "pe_hooks_over_bridge": bridge_ratios(rows), "attach_detach": attach}
        (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
        (args.out / f"{name}.md").write_text(report(res))

    run(cases, quick=args.quick, rounds=rounds[0], big_rounds=rounds[1], gen_rounds=rounds[2],
        new_tokens=4 if args.quick else 32, checkpoint=checkpoint)
    print((args.out / f"{name}.md").read_text())


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def report(res: dict[str, Any]) -> str:
    from benchmarks.peers_report import render

    return render(res)


if __name__ == "__main__":
    main()
