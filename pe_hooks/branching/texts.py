"""Trajectories of given texts: the latents of texts a user supplies, in the same ``BranchLatents``
as sampled branches, on any model pe-hooks supports (encoders included: no generation, no KV cache).

**Groups.** Each text is one trajectory (a "branch"); texts are grouped as the branches of one
prompt are (the figure's hue families, the folds of the layer choice, the grouped path ratio).
``read_texts`` accepts:

- a list of strings: one group;
- a list of lists of strings, or a dict ``{group name: [texts]}``: one group per list / key;
- a path to a ``.json`` file holding any of these, or the ``texts.json`` that ``pe-hooks branches``
  writes (grouped by its prompts);
- a path to any other file: plain text, **one text per line, groups separated by blank lines**.

Every group needs at least two texts (a group's texts are compared with each other).

**Alignment.** Texts are tokenised by the reading model as it reads any input (``model.to_tokens``:
``BOS`` / ``[CLS]`` prepended, ``[SEP]`` appended where the model does). Special tokens (BOS, EOS,
``[CLS]``, ``[SEP]``, padding) are read but are not part of a trajectory; of the rest, every
text keeps its first ``max_tokens`` tokens, so all trajectories cover the same positions (token
``i`` of a text sits at position ``i`` as the model sees it: 1, 2, ... after a BOS / ``[CLS]``).
By default ``max_tokens`` is the shortest text's length; texts whose lengths differ by more than
``MAX_LENGTH_RATIO`` are refused unless ``max_tokens`` is given (most of the long ones would be
cut). As for sampled branches, position 0 is left out of the views (the BOS, or the first token of
a model without one: an attention sink either way).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pe_hooks.branching.collect import check_collectable, trajectory_latents
from pe_hooks.branching.latents import BranchLatents
from pe_hooks.core.errors import DataError
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import Model
from pe_hooks.core.validate import check_int
from pe_hooks.data import TokenData, positions_from_mask
from pe_hooks.sites.inspect import inspect

TextsLike = str | Path | Sequence[str] | Sequence[Sequence[str]] | Mapping[str, Sequence[str]]

#: texts whose token counts differ by more than this factor need an explicit ``max_tokens``
MAX_LENGTH_RATIO = 2.0

FORMAT = ("a list of strings (one group), a list of lists or a dict {group: [texts]} (one group each), a .json "
          "file of any of these (or the texts.json of pe-hooks branches), or a text file with one text per line "
          "and groups separated by blank lines")


def read_texts(texts: TextsLike) -> dict[str, list[str]]:
    """The groups of ``texts`` (see the module docstring): group name -> its texts."""
    if isinstance(texts, Path) or (isinstance(texts, str) and _is_file(texts)):
        return _check_groups(_read_file(Path(texts)), f"{texts}")
    if isinstance(texts, str):
        raise DataError(f"texts={texts[:60]!r} is not an existing file, and one text is one trajectory (the scores "
                        "compare trajectories); pass a file or a list of at least two texts. Formats: " + FORMAT)
    return _check_groups(_groups(texts, "texts"), "texts")


def _is_file(text: str) -> bool:
    try:
        return "\n" not in text and Path(text).is_file()
    except (OSError, ValueError):  # too long a name, a NUL byte: not a path
        return False


def _read_file(path: Path) -> dict[str, list[str]]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read texts from {path}: {exc}; pass a UTF-8 text or JSON file") from exc
    if not raw.strip():
        raise DataError(f"{path} is empty; it should hold the texts: {FORMAT}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); it should hold {FORMAT}") from exc
        return _groups(data, str(path))
    groups: list[list[str]] = [[]]
    for line in raw.splitlines():
        if line.strip():
            groups[-1].append(line.strip())
        elif groups[-1]:
            groups.append([])
    return {f"group {i}": g for i, g in enumerate(g for g in groups if g)}


def _groups(data: Any, where: str) -> dict[str, list[str]]:
    """Groups from a parsed list / list of lists / dict / ``pe-hooks branches`` texts.json."""
    if isinstance(data, Mapping) and isinstance(data.get("groups"), Mapping):  # texts.json of given texts
        return _groups(data["groups"], f"{where}['groups']")
    if isinstance(data, Mapping) and "texts" in data and "prompts" in data:  # a pe-hooks branches texts.json
        found, prompts = list(data["texts"]), list(data["prompts"])
        if not prompts or len(found) % len(prompts):
            raise DataError(f"{where}: {len(found)} texts do not split evenly over {len(prompts)} prompts")
        n = len(found) // len(prompts)
        return {str(p): found[i * n:(i + 1) * n] for i, p in enumerate(prompts)}
    if isinstance(data, Mapping):
        return {str(k): _strings(v, f"{where}[{k!r}]") for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and all(isinstance(v, (list, tuple)) for v in data):
        return {f"group {i}": _strings(v, f"{where}[{i}]") for i, v in enumerate(data)}
    if isinstance(data, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in data):
        raise DataError(f"{where} mixes texts and lists of texts; give a list of texts (one group) or a list of "
                        "lists of texts (one group each)")
    if isinstance(data, (list, tuple)):
        return {"texts": _strings(data, where)}
    raise DataError(f"{where}: got {type(data).__name__}; it should hold {FORMAT}")


def _strings(values: Any, where: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise DataError(f"{where} should be a list of texts, got {type(values).__name__}")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise DataError(f"{where}[{i}] is not a non-empty string ({v!r}); every text must be a non-empty string")
    return list(values)


def _check_groups(groups: dict[str, list[str]], where: str) -> dict[str, list[str]]:
    if not groups or not sum(len(g) for g in groups.values()):
        raise DataError(f"{where} holds no text; give {FORMAT}")
    if sum(len(g) for g in groups.values()) < 2:
        raise DataError(f"{where} holds a single text; one text is one trajectory and the scores compare "
                        "trajectories: give at least two texts")
    small = [name for name, g in groups.items() if len(g) < 2]
    if small:
        raise DataError(f"{where}: group {small[0]!r} holds {len(groups[small[0]])} text(s); a group's texts are "
                        "compared with each other: give every group at least two texts, or put all texts in one list")
    return groups


def special_ids(model: Model) -> set[int]:
    """Token ids left out of trajectories: BOS, EOS, ``[CLS]``, ``[SEP]``, padding."""
    tok = model.tokenizer
    attrs = ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "pad_token_id")
    return {int(v) for v in (getattr(tok, a, None) for a in attrs) if v is not None}


def tokenize_trajectories(
    model: Model, texts: Sequence[str], max_tokens: int | None = None
) -> tuple[TokenData, torch.Tensor, int]:
    """``(sequences, content, max_tokens)``: the texts as the model reads them (right-padded where
    their special tokens differ), ``content`` ``[n, seq]`` True on each text's first ``max_tokens``
    non-special tokens (the trajectory), and that number (see the module docstring)."""
    if model.tokenizer is None:
        raise DataError("the model has no tokenizer; trajectories of texts need one")
    specials = special_ids(model)
    ids = [model.to_tokens(t)[0].cpu() for t in texts]
    where = [torch.tensor([int(v) not in specials for v in row]).nonzero().flatten() for row in ids]
    counts = [len(w) for w in where]
    shortest, longest = min(counts), max(counts)
    n_ctx = inspect(model).n_ctx
    if max_tokens is None:
        if longest > MAX_LENGTH_RATIO * shortest:
            i = counts.index(shortest)
            raise DataError(
                f"the texts are {shortest} to {longest} tokens long under {inspect(model).model_name}'s tokenizer "
                f"(text {i} is the shortest); every trajectory is cut to the same number of tokens, by default the "
                f"shortest, which would drop {1 - shortest * len(counts) / sum(counts):.0%} of the tokens: drop or "
                f"lengthen the short texts, or pass max_tokens={shortest} (--max-tokens) to accept the cut"
            )
        max_tokens = shortest
    check_int(max_tokens, "max_tokens", minimum=2, fix="tokens kept per text (default: the shortest text's)")
    short = [i for i, c in enumerate(counts) if c < max_tokens]
    if short:
        room = " (the model's context)" if longest >= n_ctx - 2 else ""
        raise DataError(f"text {short[0]} has {counts[short[0]]} tokens{room}, fewer than max_tokens={max_tokens}; "
                        f"lower max_tokens to at most {shortest} or drop the short texts")
    rows: list[torch.Tensor] = []
    for row, w in zip(ids, where):
        cut, last = int(w[max_tokens - 1]) + 1, int(w[-1]) + 1
        rows.append(torch.cat([row[:cut], row[last:]]))  # the trailing specials ([SEP]) stay
    width = max(len(r) for r in rows)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    content = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (r, w) in enumerate(zip(rows, where)):
        tokens[i, :len(r)], mask[i, :len(r)] = r, True
        content[i, w[:max_tokens]] = True
    return TokenData(tokens, mask, positions_from_mask(mask), list(texts)), content, int(max_tokens)


def text_latents(
    model: Model,
    texts: TextsLike,
    *,
    layers: str | Sequence[int | str] | None = "auto",
    auto_layers: int = 1,
    site: str = "resid_pre",
    hooks: HookList | None = None,
    max_tokens: int | None = None,
    massive: float | None = 8.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> BranchLatents:
    """The latents of given texts, one trajectory per text (the module docstring says how texts are
    grouped and aligned); the other arguments are ``pe_hooks.branching.branches``'. ``hooks``: an
    intervention active while the texts are read. Nothing is generated: any model will do."""
    groups = read_texts(texts)
    check_collectable(model, layers, site)  # bad layers and sites fail before any work
    flat = [t for g in groups.values() for t in g]
    data, content, _ = tokenize_trajectories(model, flat, max_tokens)
    group = np.repeat(np.arange(len(groups)), [len(g) for g in groups.values()])  # each text's group
    return trajectory_latents(
        model, data, content, group, layers, texts=flat, prompts=list(groups), prompt_len=0, site=site, hooks=hooks,
        auto_layers=auto_layers, massive=massive, batch_size=batch_size, seed=seed, progress=progress,
    )


def groups_of(lat: BranchLatents) -> dict[str, list[str]]:
    """The texts of ``lat`` grouped by prompt (``prompts[i]`` -> its branches' texts): what a
    reader model reads of branches another model generated."""
    if lat.prompt is None or not lat.texts:
        raise DataError("these latents carry no texts grouped by prompt")
    group_of = {int(b): int(p) for b, p in zip(lat.branch, lat.prompt)}
    names = lat.prompts if len(set(lat.prompts)) == len(lat.prompts) else [f"{i}: {p}" for i, p in enumerate(lat.prompts)]
    out: dict[str, list[str]] = {name: [] for name in names}
    for b, text in enumerate(lat.texts):
        out[names[group_of[b]]].append(text)
    return out
