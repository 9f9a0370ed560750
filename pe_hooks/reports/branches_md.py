"""Markdown reports of generation branches (``metrics.md``, ``branches.md``): the setting, why the
layer was chosen, the headline scores with their nulls, all metrics, and the texts. Pure functions
of the data; nothing here runs a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pe_hooks.branching.latents import BranchLatents
from pe_hooks.branching.layer_choice import choice_reason
from pe_hooks.branching.run import BranchesRun
from pe_hooks.branching.scores import verdict
from pe_hooks.branching.separation import METRICS
from pe_hooks.core.errors import DataError

BRANCH_METRIC_NAMES = {
    "knn_branch_purity": "kNN branch purity",
    "knn_position_agreement": "kNN pos. agreement",
    "knn_cross_position_agreement": "kNN cross-branch pos. agreement",
    "position_spearman": "max abs Spearman(pos, lead axis)",
    "silhouette_branch": "silhouette (branch)",
    "nmi_kmeans_branch": "NMI k-means/branch",
    "nmi_kmeans_position": "NMI k-means/position",
}

CONTROL_VIEWS = ("shuffled", "chance")


def _frame(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        raise DataError("no metric rows to tabulate")
    return df


def _f(v: float, fmt: str = ".3f") -> str:
    return "–" if not np.isfinite(v) else format(v, fmt)


def branch_metrics_table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> str:
    """Markdown table of separation metrics (views x metrics) from tidy rows
    (layer, view, space, metric, value), e.g. ``BranchAnalysis.rows``."""
    df = _frame(rows)
    values = {(r.view, r.space, r.metric): float(r.value) for r in df.itertuples()}
    pairs = list(dict.fromkeys((r.view, r.space) for r in df.itertuples()))
    cols = [m for m in METRICS if m in set(df["metric"])]
    lines = ["| view | space | " + " | ".join(BRANCH_METRIC_NAMES[c] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for view, space in pairs:
        got = [values.get((view, space, c), float("nan")) for c in cols]
        lines.append(f"| {view} | {space} | " + " | ".join(_f(v) for v in got) + " |")
    return "\n".join(lines)


def headline_table(rows: Sequence[Mapping[str, Any]] | pd.DataFrame, spaces: Sequence[str] = ("original", "umap")) -> str:
    """The headline scores of each view (``pe_hooks.branching.scores``) with their
    shuffled-label nulls (mean [2.5%, 97.5%]), what the path ratio reads as, the held-out R^2 of
    position, and the kNN cross-branch position agreement."""
    df = _frame(rows)
    v = {(r.view, r.space, r.metric): float(r.value) for r in df.itertuples()}
    pairs = [(view, space) for view, space in dict.fromkeys((r.view, r.space) for r in df.itertuples())
             if view not in CONTROL_VIEWS and space in spaces]
    grouped = "path_ratio_by_group" in set(df["metric"])
    lines = [
        "| view | space | path ratio | its null | reads | " + ("path ratio by group | its null | " if grouped else "")
        + "kNN branch purity | its null | position R² (held out) | kNN cross-branch pos. agreement |",
        "|---|---|---|---|---|" + ("---|---|" if grouped else "") + "---|---|---|---|",
    ]
    for view, space in pairs:
        def g(m: str, view: str = view, space: str = space) -> float:
            return v.get((view, space, m), float("nan"))

        ratio, lo, hi = g("path_ratio"), g("path_ratio_null_lo"), g("path_ratio_null_hi")
        by_group = (f"**{_f(g('path_ratio_by_group'))}** | {_f(g('path_ratio_by_group_null'))} "
                    f"[{_f(g('path_ratio_by_group_null_lo'))}, {_f(g('path_ratio_by_group_null_hi'))}] | ") if grouped else ""
        lines.append(
            f"| {view} | {space} | **{_f(ratio)}** | {_f(g('path_ratio_null'))} [{_f(lo)}, {_f(hi)}] "
            f"| {verdict(ratio, lo, hi)} | {by_group}**{_f(g('knn_branch_purity'))}** | "
            f"{_f(g('knn_branch_purity_null'))} [{_f(g('knn_branch_purity_null_lo'))}, "
            f"{_f(g('knn_branch_purity_null_hi'))}] | {_f(g('position_r2'), '.2f')} | "
            f"{_f(g('knn_cross_position_agreement'))} |"
        )
    return "\n".join(lines)


def layer_scores_table(scores: pd.DataFrame, chosen: Sequence[int] = ()) -> str:
    """One row per layer: how positional its raw latents are (``pe_hooks.branching.layer_choice``)."""
    lines = ["| layer | held-out positional share | its null (mean) | measurable | position R² (held out) "
             "| path ratio (raw) |", "|---|---|---|---|---|---|"]
    for r in scores.itertuples():
        mark = " ◀ chosen" if int(r.layer) in set(chosen) else ""
        lines.append(f"| {r.layer}{mark} | {r.position_share:.3f} | {r.position_share_null:.3f} | "
                     f"{'yes' if r.measurable else 'no'} | {r.position_r2:.2f} | {r.path_ratio:.3f} |")
    return "\n".join(lines)


def branches_header(
    settings: Mapping[str, Any], prompts: Sequence[str], n_excluded: Mapping[int, int], timings: Mapping[str, float]
) -> list[str]:
    """The opening lines of ``metrics.md`` / ``branches.md``: the setting and what each view is.

    ``settings`` holds model, branches, tokens, temperature, top_p, seed, site, eraser, fit_seqs,
    intervention and massive (the ``pe-hooks branches`` options).
    """
    s = settings
    return [
        *_source_lines(s, prompts),
        "",
        f"Views: *raw* = latents of the {'generated' if s.get('source', 'sampled') == 'sampled' else 'read'} "
        "tokens; *erased (…, reference)* = the same latents through a "
        f"{s['eraser']} eraser fitted on {s['fit_seqs']} sequences of the reference corpus (not the branches); "
        "*erased (branches, out-of-sample)* = LEACE (4 Fourier features) fitted on the branches, cross-fitted by "
        "branch (4 folds: no token is erased by an eraser that saw it); "
        f"*intervened ({s['intervention']})* = {_intervened_what(s)}; "
        "*shuffled* = raw latents with (branch, position) labels permuted jointly (empirical floor); *chance* = "
        f"analytic kNN chance. {_excluded_what(s)}; massive-activation tokens "
        f"(norm > {s['massive']} x median) excluded per layer: {dict(n_excluded)}.",
        "",
        "Headline scores (`pe_hooks.branching.scores`): **path ratio** = mean squared distance between "
        "*different* branches at the *same* position / mean squared distance within a branch at *different* "
        "positions (standardised latents, or the UMAP plane): < 1 the branches follow one positional path, "
        "≈ 1 no structure, > 1 the branches separate; reads \"same path\" below 0.9, \"branches separate\" above "
        "1.1 (and outside the null). **kNN branch purity** = share of each token's 10 nearest neighbours from "
        "its own branch. Nulls: the same score with labels permuted across tokens "
        f"({s.get('n_perm', 100)} permutations; mean [2.5%, 97.5%]). **Path ratio by group** (with two or more "
        "prompts / groups): the path ratio of each group's branches alone, averaged over groups (pooling mixes "
        "pairs from different prompts); its null permutes labels within groups. **Position R²**: held-out ridge "
        "R² of the position index (branches held out): can position still be *read*, however little it shapes "
        "the picture.",
        "",
        f"Time on this machine: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}.",
        "",
    ]


def _source_lines(s: Mapping[str, Any], prompts: Sequence[str]) -> list[str]:
    """The title and the sentence saying where the trajectories come from."""
    source = s.get("source", "sampled")
    sampled = (f"{s['branches']} branches each x {s['tokens']} new tokens; temperature {s['temperature']}, "
               f"top-p {s['top_p']}, seed {s['seed']}")
    if source == "texts":
        return [f"# Trajectories of given texts: {s['model']}", "",
                f"{s['texts']} given texts in {len(prompts)} group(s) ({', '.join(repr(p) for p in prompts)}), "
                f"read by {s['model']} (nothing generated), each cut to its first {s['tokens_read']} tokens "
                f"(special tokens left out); seed {s['seed']}; site {s['site']}."]
    if source == "reader":
        return [f"# Branches of {s['generator']}, read by {s['model']}", "",
                f"Prompts: {', '.join(repr(p) for p in prompts)}; {sampled}, sampled from {s['generator']}, decoded, "
                f"re-tokenised and read by {s['model']} (each continuation cut to its first {s['tokens_read']} "
                f"tokens under {s['model']}'s tokenizer); site {s['site']}."]
    return [f"# Branches: {s['model']}", "",
            f"Prompts: {', '.join(repr(p) for p in prompts)}; {sampled}; site {s['site']}."]


def _intervened_what(s: Mapping[str, Any]) -> str:
    if s.get("source", "sampled") == "sampled":
        return "new branches generated and read under that intervention"
    return f"the same texts read by {s['model']} under that intervention"


def _excluded_what(s: Mapping[str, Any]) -> str:
    if s.get("source", "sampled") == "sampled":
        return "Prompt tokens and BOS are excluded"
    return "Special tokens (BOS, [CLS], [SEP], padding) and position 0 are excluded"


def layer_choice_section(scores: pd.DataFrame | None, chosen: Sequence[int]) -> list[str]:
    """Why these layers (``layers="auto"``): the reason and the score of every layer."""
    if scores is None or not len(chosen):
        return []
    return ["## Layer choice", "", choice_reason(scores, list(chosen)), "",
            layer_scores_table(scores, chosen), ""]


def branches_tables(rows: Sequence[Mapping[str, Any]], layers: Sequence[int]) -> list[str]:
    """One section per layer: the figure, the headline scores and all metrics."""
    out: list[str] = []
    for layer in layers:
        mine = [r for r in rows if r["layer"] == layer]
        out += [f"## Layer {layer}", "", f"![layer {layer}](branches-layer{layer}.png)", "",
                headline_table(mine), "", "All metrics:", "", branch_metrics_table(mine), ""]
    return out


def branches_texts(
    raw: BranchLatents, n_branches: int, intervened: BranchLatents | None, intervention: str, source: str = "sampled"
) -> list[str]:
    """The generated continuations (and the intervened ones), or the texts read."""
    group = dict(zip(raw.branch.tolist(), (raw.prompt if raw.prompt is not None else raw.branch * 0).tolist()))
    texts = ["## Generated continuations" if source == "sampled" else "## Texts read", ""]
    for i, txt in enumerate(raw.texts):
        texts.append(f"{i}. ({'prompt' if source != 'texts' else 'group'} {group.get(i, i // max(1, n_branches))}) {txt!r}")
    if source != "sampled":
        return texts
    if intervened is not None:
        texts += ["", f"## Intervened continuations ({intervention})", ""]
        texts += [f"{i}. {txt!r}" for i, txt in enumerate(intervened.texts)]
    return texts


def write_branches_markdown(
    folder: str | Path,
    *,
    settings: Mapping[str, Any],
    raw: BranchLatents,
    intervened: BranchLatents | None,
    rows: Sequence[Mapping[str, Any]],
    layers: Sequence[int],
    timings: Mapping[str, float],
) -> str:
    """Write ``metrics.md`` (setting, layer choice, tables) and ``branches.md`` (+ the texts) into
    ``folder``; returns the ``metrics.md`` text."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    n_excluded = {layer: int((~raw.keep(layer)).sum()) for layer in layers}
    head = branches_header(settings, raw.prompts, n_excluded, timings)
    head += layer_choice_section(raw.layer_scores, raw.auto_layers)
    tables = branches_tables(rows, layers)
    texts = branches_texts(raw, int(settings["branches"]), intervened, str(settings["intervention"]),
                           str(settings.get("source", "sampled")))
    (out / "metrics.md").write_text("\n".join(head + tables) + "\n")
    (out / "branches.md").write_text("\n".join(head + tables + texts) + "\n")
    return "\n".join(head + tables)


def write_branches_report(run: BranchesRun, folder: str | Path) -> str:
    """``write_branches_markdown`` of a ``pe_hooks.run_branches`` result; returns the ``metrics.md`` text."""
    return write_branches_markdown(folder, settings=run.settings, raw=run.raw, intervened=run.intervened,
                                   rows=run.rows, layers=run.layers, timings=run.timings)
