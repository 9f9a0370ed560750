"""Sampling and analysing generation branches: the latents of sampled continuations (``generate``,
``latents``), which layer to look at (``layer_choice``), raw / erased / intervened views
(``views``), their UMAP and scores (``analysis``, ``scores``, ``grouped``, ``separation``), planted
data with a known answer (``planted``), trajectories of given texts on any model (``texts``; the
forward both share: ``collect``), and the whole pipeline of ``pe-hooks branches`` (``run``)."""

from pe_hooks.branching.analysis import BranchAnalysis, analyze, umap_embed
from pe_hooks.branching.generate import branches
from pe_hooks.branching.grouped import grouped_path_ratio
from pe_hooks.branching.latents import DEFAULT_PROMPTS, BranchLatents, View
from pe_hooks.branching.layer_choice import choice_reason, choose_layers, layer_scores
from pe_hooks.branching.planted import planted_branches
from pe_hooks.branching.run import BranchesRun, run_branches
from pe_hooks.branching.scores import headline_scores, path_ratio, verdict
from pe_hooks.branching.separation import metrics_frame, separation_metrics
from pe_hooks.branching.texts import read_texts, text_latents
from pe_hooks.branching.views import erase_crossfit, make_views

__all__ = [
    "DEFAULT_PROMPTS",
    "BranchAnalysis",
    "BranchLatents",
    "BranchesRun",
    "View",
    "analyze",
    "branches",
    "choice_reason",
    "choose_layers",
    "erase_crossfit",
    "grouped_path_ratio",
    "headline_scores",
    "layer_scores",
    "make_views",
    "metrics_frame",
    "path_ratio",
    "planted_branches",
    "read_texts",
    "run_branches",
    "separation_metrics",
    "text_latents",
    "umap_embed",
    "verdict",
]
