"""Does any layer / prompt / length setting make SmolLM2's generation branches follow one positional
path? The README's table of settings tried (``layers="auto"`` scores every layer of each setting).

    python docs/branches_settings.py            # ~5-10 min on 2 quiet cores; writes
                                                # docs/results/branches-settings-smollm2-135m/

For each setting: the best layer by held-out positional share (with its shuffled null), the best
(lowest) raw path ratio, and the best held-out ridge R^2 of position, over all 30 layers
(``pe_hooks.branching.layer_choice``). The last rows score the reference corpus (stdlib docstrings,
48 sequences x 256 tokens, folds = sequences) over position ranges, to show where the positional
variance that ``pe-hooks sweep`` measures over positions 1-63 lives.

    python docs/branches_settings.py --reference-only   # ~3 min: recompute the reference rows only

"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pe_hooks import branches, load_model
from pe_hooks.branching import DEFAULT_PROMPTS, layer_scores
from pe_hooks.core.atomic import write_artefact
from pe_hooks.data import load_data, stream_activations

OUT = Path(__file__).parent / "results" / "branches-settings-smollm2-135m"

SETTINGS = [
    # (label, prompts, branches per prompt, new tokens, temperature)
    ("4 default prompts, 8 x 128 tokens (the CLI default)", list(DEFAULT_PROMPTS), 8, 128, 1.0),
    ("4 one-word prompts, 8 x 64 tokens (positions from 2)", ["The", "I", "In", "A"], 8, 64, 1.0),
    ("1 prompt, 8 x 256 tokens (long)", [DEFAULT_PROMPTS[0]], 8, 256, 1.0),
    ("4 default prompts, 8 x 128 tokens, temperature 0.7", list(DEFAULT_PROMPTS), 8, 128, 0.7),
]


def summarise(label: str, scores: pd.DataFrame, positions: np.ndarray) -> dict[str, object]:
    excess = scores["position_share"] - scores["position_share_null"]
    s = scores.loc[excess.idxmax()]
    r = scores.loc[scores["path_ratio"].idxmin()]
    d = scores.loc[scores["position_r2"].idxmax()]
    return {
        "setting": label, "positions": f"{int(positions.min())}-{int(positions.max())}",
        "best share layer": int(s.layer), "share": round(float(s.position_share), 3),
        "share null": round(float(s.position_share_null), 3), "any layer measurable": bool(scores["measurable"].any()),
        "lowest path ratio layer": int(r.layer), "path ratio": round(float(r.path_ratio), 3),
        "best R² layer": int(d.layer), "R²": round(float(d.position_r2), 2),
    }


def reference_rows(model: object) -> list[dict[str, object]]:
    """The reference corpus over position ranges (no branches: folds are sequences)."""
    td = load_data(model, None, seq_len=256, n_seqs=48, seed=0)  # type: ignore[arg-type]
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(30)]
    acts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in stream_activations(model, td, names, batch_size=8, progress=False):  # type: ignore[arg-type]
        for n in names:
            acts[n].append(batch.acts[n].numpy())
    lat = {layer: np.concatenate(acts[n]).reshape(-1, len(acts[n][0][0, 0])) for layer, n in enumerate(names)}
    pos = td.positions.reshape(-1).numpy()
    seq = np.repeat(np.arange(td.positions.shape[0]), td.positions.shape[1])
    rows = []
    for lo, hi in ((1, 8), (2, 8), (1, 63), (9, 255)):
        keep = {}
        for layer, x in lat.items():
            nrm = np.linalg.norm(x, axis=1)
            k = (pos >= lo) & (pos <= hi)
            keep[layer] = k & (nrm <= 8.0 * np.median(nrm[k]))  # massive activations out, as in branches
        # "branches" = sequences, "prompts" = 4 interleaved groups of sequences (the folds)
        scores = layer_scores(lat, keep, seq, pos, seq % 4)
        rows.append(summarise(f"reference corpus (docstrings), positions {lo}-{hi}", scores, pos[(pos >= lo) & (pos <= hi)]))
    return rows


def markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> int:
    model = load_model("smollm2-135m")
    rows = []
    settings = SETTINGS
    if "--reference-only" in sys.argv[1:]:
        old = pd.read_csv(OUT / "settings.csv")
        rows = old[~old["setting"].str.startswith("reference corpus")].to_dict(orient="records")
        settings = []
    for label, prompts, n_b, n_new, temp in settings:
        t = time.perf_counter()
        lat = branches(model, prompts, n_branches=n_b, max_new_tokens=n_new, temperature=temp, progress=False)
        assert lat.layer_scores is not None
        rows.append(summarise(label, lat.layer_scores, lat.position[lat.position > 0]))
        print(f"{label}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    rows += reference_rows(model)
    df = pd.DataFrame(rows)
    with write_artefact(OUT, "branches settings", 1, replaces=("settings.csv", "settings.md")) as tmp:
        df.to_csv(tmp / "settings.csv", index=False)
        (tmp / "settings.md").write_text(markdown(df) + "\n")
    print(markdown(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
