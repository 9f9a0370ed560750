"""Latents of generation branches: one row per generated token (``BranchLatents``), the built-in
prompts, and the massive-activation flags (Sun et al. 2024)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pe_hooks.core.atomic import write_artefact
from pe_hooks.core.errors import DataError, HookPointError

#: Built-in prompts (no download): different topics, so "regardless of content" can be tested.
DEFAULT_PROMPTS = (
    "The most surprising thing about the ocean is",
    "To fix a slow Python program, the first step is",
    "Once upon a time, in a village at the edge of the forest,",
    "The recipe for a good chocolate cake starts with",
)

View = tuple[np.ndarray, np.ndarray, np.ndarray]  # (x [n, d], branch [n], position [n])


@dataclass
class BranchLatents:
    """Latents of generated tokens, one row per token.

    Attributes:
        latents: ``latents[layer]`` is ``[n, d]``.
        branch: ``[n]`` branch id, prompt-major (prompt ``p``, sample ``s`` -> ``p * n_branches + s``).
        position: ``[n]`` position of the token as the model saw it (BOS = 0; padding not counted).
        token: ``[n]`` decoded text of each token.
        prompt: ``[n]`` index of the prompt the branch continues.
        texts: the generated continuation of each branch.
        sequences: ``[branches, len]`` full token ids (left-padded prompts + continuation).
        flagged: per layer, ``[n]`` True for massive-activation tokens (left out of the views).
        layer_scores: with ``layers="auto"``, one row per layer of the model: how positional its
            latents are (``pe_hooks.branching.layer_choice.layer_scores``); ``None`` otherwise.
        auto_layers: the layers ``"auto"`` chose (empty if no layer was chosen automatically).
    """

    latents: dict[int, np.ndarray]
    branch: np.ndarray
    position: np.ndarray
    token: list[str]
    prompt: np.ndarray | None = None
    texts: list[str] = field(default_factory=list)
    sequences: torch.Tensor | None = None
    prompt_len: int = 0
    flagged: dict[int, np.ndarray] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    layer_scores: pd.DataFrame | None = None
    auto_layers: list[int] = field(default_factory=list)

    @classmethod
    def from_arrays(
        cls, x: Any, branch: Any, position: Any, layer: int = 0, *, prompt: Any = None, massive: float | None = None
    ) -> BranchLatents:
        """Latents a user already has: ``x`` ``[n, d]``, one branch id and one position per row.

        ``massive``: flag rows whose norm exceeds ``massive`` x the median norm (as ``branches`` does).
        """
        xa = np.asarray(x, dtype=np.float32)
        b, p = np.asarray(branch), np.asarray(position)
        if xa.ndim != 2 or len(xa) != len(b) or len(b) != len(p):
            raise DataError("x must be [n, d] with one branch id and one position per row")
        if not np.isfinite(xa).all():
            raise DataError("latents contain NaN or inf; drop or fix those rows first")
        pr = None if prompt is None else np.asarray(prompt)
        flagged = {layer: flag_massive(xa, massive)} if massive is not None else {}
        return cls({layer: xa}, b, p, [""] * len(b), pr, flagged=flagged)

    @property
    def df(self) -> pd.DataFrame:
        """One row per collected token: branch, prompt, position, token text."""
        return pd.DataFrame({
            "branch": self.branch,
            "prompt": self.prompt if self.prompt is not None else np.zeros(len(self.branch), dtype=int),
            "position": self.position,
            "token": self.token,
        })

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write the data: ``tokens.csv`` (``df``), ``latents.npz`` (one array per layer, and the
        massive-activation flags) and ``branches.json`` (prompts and generated texts)."""
        out = Path(folder)
        arrays = {f"layer{k}": v for k, v in self.latents.items()}
        arrays.update({f"flagged{k}": v for k, v in self.flagged.items()})
        names = ("tokens.csv", "latents.npz", "branches.json")
        with write_artefact(out, "branch latents", 1, replaces=names) as tmp:  # complete or not at all
            self.df.to_csv(tmp / "tokens.csv", index=False)
            np.savez(tmp / "latents.npz", **arrays)  # type: ignore[arg-type]
            (tmp / "branches.json").write_text(json.dumps({
                "prompts": self.prompts, "texts": self.texts, "prompt_len": self.prompt_len,
                "auto_layers": self.auto_layers,
                "layer_scores": None if self.layer_scores is None else self.layer_scores.to_dict(orient="records"),
            }, indent=1))
        return {"csv": out / "tokens.csv", "npz": out / "latents.npz", "json": out / "branches.json"}

    def keep(self, layer: int) -> np.ndarray:
        """Rows used in the views of ``layer``: position > 0 and not flagged as massive."""
        keep = self.position > 0
        if layer in self.flagged:
            keep &= ~self.flagged[layer]
        return np.asarray(keep)

    def view(self, layer: int) -> View:
        """``(x, branch, position)`` of ``layer`` with the excluded rows dropped."""
        if layer not in self.latents:
            raise HookPointError(f"layer {layer} was not collected; collected: {sorted(self.latents)}")
        k = self.keep(layer)
        return self.latents[layer][k], self.branch[k], self.position[k]


def flag_massive(x: np.ndarray, ratio: float | None) -> np.ndarray:
    """Sun et al. 2024: tokens whose latent norm is ``ratio`` x the median norm or more."""
    if ratio is None:
        return np.zeros(len(x), dtype=bool)
    norms = np.linalg.norm(x, axis=1)
    return np.asarray(norms > ratio * np.median(norms))
