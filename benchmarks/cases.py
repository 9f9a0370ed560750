"""Benchmark cases: forward overhead per intervention, sweep vs the naive workflow, generation."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import torch

from benchmarks.harness import interleaved
from pe_hooks import inspect
from pe_hooks.models import bridge_from_hf, load_hf, tiny_tokenizer


def gpt2_small_shaped_hf(layers: int = 12) -> tuple[Any, Any]:
    """A GPT-2-small-shaped random-init HF model (12 layers, d 768, 12 heads; seeded: the same weights
    every call) and its byte-level tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=layers, n_head=12,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg.architectures = ["GPT2LMHeadModel"]
    return GPT2LMHeadModel(cfg).eval(), tok


def gpt2_small_shaped(layers: int = 12) -> tuple[Any, Any, Any]:
    """A GPT-2-small-shaped random-init model (12 layers, d 768, 12 heads): (hf, bridge, tokenizer)."""
    hf, tok = gpt2_small_shaped_hf(layers)
    hf.set_attn_implementation("eager")
    bridge = bridge_from_hf(gpt2_small_shaped_hf(layers)[0], tok, name="gpt2-small-shaped")
    return hf, bridge, tok


def smollm2() -> tuple[Any, Any, Any]:
    hf, tok = load_hf("smollm2-135m")
    hf.set_attn_implementation("eager")
    hf2, tok2 = load_hf("smollm2-135m")
    return hf, bridge_from_hf(hf2, tok2, name="smollm2-135m"), tok


def forward_overhead(model_name: str, shapes: list[tuple[int, int]], rounds: int) -> list[dict[str, Any]]:
    from pe_hooks import fit_eraser, project_out, remove, replace, shift, zero

    hf, bridge, _ = gpt2_small_shaped() if model_name == "gpt2-small-shaped" else smollm2()
    scheme = inspect(bridge)
    eraser = fit_eraser(bridge, None, method="leace", n_seqs=32, seq_len=64, progress=False)
    last = scheme.n_layers - 1
    hooks: dict[str, Any] = {}
    if scheme.scheme.value == "learned":
        hooks["zero (pos_embed)"] = zero(bridge)
        hooks["remove (pos_embed)"] = remove(bridge)
        hooks["replace shift(1) (pos_embed)"] = replace(bridge, shift(1))
        hooks["project_out k=3 (pos_embed)"] = project_out(bridge, k=3)
    else:
        hooks["zero (rotary, 1 layer)"] = zero(bridge, layers=[last])
        hooks["zero (rotary, all layers)"] = zero(bridge)
        hooks["remove (rotary, all layers)"] = remove(bridge)
        hooks["replace shift(1) (rotary, all)"] = replace(bridge, shift(1))
        hooks["zero (rot_qk, all layers)"] = zero(bridge, site="rot_qk")
    hooks["erase LEACE (resid_pre, all layers)"] = eraser.hooks(bridge)
    rows = []
    for batch, seq in shapes:
        ids = torch.randint(3, 200, (batch, seq))
        conds: dict[str, Any] = {
            "raw HF (eager)": lambda ids=ids: hf(ids),
            "bridge, no hooks": lambda ids=ids: bridge(ids),
        }
        for name, h in hooks.items():
            def run(h: Any = h, ids: torch.Tensor = ids) -> Any:
                with h.applied(bridge):
                    return bridge(ids)
            conds[f"bridge + {name}"] = run
        with torch.no_grad():
            out = interleaved(conds, rounds=rounds, baseline="bridge, no hooks")
        for r in out:
            r.update(model=model_name, batch=batch, seq=seq)
        rows += out
    return rows


def generation(model_name: str, new_tokens: int, rounds: int) -> list[dict[str, Any]]:
    from pe_hooks import replace, shift, zero

    _, bridge, tok = gpt2_small_shaped() if model_name == "gpt2-small-shaped" else smollm2()
    ids = tok("The most surprising thing about the ocean is", return_tensors="pt").input_ids
    z = zero(bridge)
    sh = replace(bridge, shift(3))

    def gen(h: Any = None) -> Any:
        if h is None:
            return bridge.generate(ids, max_new_tokens=new_tokens, do_sample=False, verbose=False, stop_at_eos=False)
        with h.applied(bridge):
            return bridge.generate(ids, max_new_tokens=new_tokens, do_sample=False, verbose=False, stop_at_eos=False)

    with torch.no_grad():
        out = interleaved({"no intervention": gen, "zero": lambda: gen(z), "replace shift(3)": lambda: gen(sh)},
                          rounds=rounds, warmup=1)
    for r in out:
        r.update(model=model_name, tokens_per_s=new_tokens / (float(r["median_ms"]) / 1e3), new_tokens=new_tokens)
    return out


# ---- sweep vs naive: each measurement in a fresh child process (peak RSS is per process) ----

CHILD = r'''
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads({threads})
from benchmarks.cases import gpt2_small_shaped
from pe_hooks.data import load_data
_, model, _ = gpt2_small_shaped(layers={layers})
td = load_data(model, None, seq_len=64, n_seqs={n_seqs}, seed=1)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
mode = "{mode}"
score = float("nan")
if mode == "bare":
    with torch.no_grad():
        for i in range(0, len(td), 16):
            model(td.tokens[i:i + 16])
elif mode in ("sweep", "sweep1"):
    from pe_hooks import sweep
    res = sweep(model, td, ["baseline"], layers=list(range({layers})), n_fit=0, n_seqs={n_seqs}, token_floor=False,
                evaluate=(mode == "sweep"), progress=False)
    score = float(res.df[(res.df.metric == ("acc" if mode == "sweep" else "r2"))].value.mean())
else:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    names = [f"blocks.{{l}}.hook_resid_pre" for l in range({layers})]
    caches = {{n: [] for n in names}}
    with torch.no_grad():
        for i in range(0, len(td), 16):
            _, cache = model.run_with_cache(td.tokens[i:i + 16])
            for n in names:
                caches[n].append(cache[n][:, 1:].numpy())
            del cache
    t = np.tile(np.arange(1, 64), len(td)); y = np.clip((t - 1) * 8 // 63, 0, 7)
    groups = np.repeat(np.arange(len(td)), 63)
    accs = []
    for n in names:
        x = np.concatenate(caches[n]).reshape(-1, caches[n][0].shape[-1])
        for tr, te in GroupKFold(4).split(x, y, groups):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x[tr], y[tr])
            accs.append((clf.predict(x[te]) == y[te]).mean())
    score = float(np.mean(accs))
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"mode": mode, "seconds": elapsed, "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base_rss) / 1024, "score": score}}))
'''


def _child(mode: str, n_seqs: int, layers: int, threads: int) -> dict[str, Any]:
    code = CHILD.format(mode=mode, n_seqs=n_seqs, layers=layers, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def sweep_vs_naive(sizes: list[int], layers: int, threads: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        res = {m: _child(m, n, layers, threads) for m in ("bare", "sweep1", "sweep", "naive")}
        rows.append({
            "n_seqs": n, "tokens": n * 63, "bare_s": res["bare"]["seconds"], "sweep_1pass_s": res["sweep1"]["seconds"],
            "sweep_s": res["sweep"]["seconds"], "naive_s": res["naive"]["seconds"],
            "1pass/bare": res["sweep1"]["seconds"] / res["bare"]["seconds"],
            "sweep/bare": res["sweep"]["seconds"] / res["bare"]["seconds"],
            "naive/sweep": res["naive"]["seconds"] / res["sweep"]["seconds"],
            "sweep_1pass_r2": res["sweep1"]["score"],
            "sweep_rss_growth_mb": res["sweep"]["rss_growth_mb"], "naive_rss_growth_mb": res["naive"]["rss_growth_mb"],
            "sweep_acc": res["sweep"]["score"], "naive_acc": res["naive"]["score"],
        })
    return rows
