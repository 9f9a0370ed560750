"""pe-hooks: remove positional information from transformer activations, and measure what is left.

The public API, all plain TransformerLens ``(name, fn)`` hooks and data objects::

    import pe_hooks as p

    model = p.load_model("tiny-gpt2")
    print(p.inspect(model))                       # where position lives
    hooks = p.zero(model) + p.remove(model)       # p.replace(model, p.shift(3)), p.project_out(model, k=3)
    eraser = p.fit_eraser(model, data)            # fitted residual-stream erasers
    result = p.sweep(model, None, ["baseline", "zero", "erase"])   # per-layer probes -> SweepResult
    lat = p.branches(model, "Once upon a time")   # latents of sampled continuations
    run = p.run_branches(model)                   # the whole `pe-hooks branches` pipeline -> BranchesRun

Pictures: ``pe_hooks.viz`` (``plot_sweep``, ``plot_branches``); Markdown reports:
``pe_hooks.reports``.
"""

from pe_hooks.branching import BranchesRun, BranchLatents, branches, run_branches
from pe_hooks.core import (
    ArgumentError,
    ArtefactError,
    DataError,
    HookList,
    HookListError,
    HookPointError,
    ModelLoadError,
    ModelMismatchError,
    PeHooksError,
    RangeError,
    SchemeError,
    UpstreamError,
    UpstreamWarning,
    apply_hooks,
)
from pe_hooks.erasers import PositionEraser, fit_eraser
from pe_hooks.interventions import (
    PositionMap,
    constant,
    frequency_bands,
    project_out,
    remove,
    replace,
    reverse,
    scale,
    shift,
    shuffle,
    table,
    zero,
)
from pe_hooks.models import DEFAULT_MODEL, load_model
from pe_hooks.probes import SweepResult, sweep
from pe_hooks.sites import PositionalScheme, Scheme, inspect

__version__ = "0.1.0"


def architectures(out: str | None = None, **kwargs: object) -> list[object]:
    """Measure what pe-hooks does with every TransformerLens architecture name (each built tiny and
    offline, inspected, every verb checked against the HF model edited by hand); write the Markdown
    table to ``out`` if given. Same as ``pe-hooks architectures``; see
    ``pe_hooks.cli.architectures_cmd.architectures`` for the options."""
    from pe_hooks.cli.architectures_cmd import architectures as measure_all

    return list(measure_all(out, **kwargs))  # type: ignore[arg-type]

__all__ = [
    "DEFAULT_MODEL",
    "ArgumentError",
    "ArtefactError",
    "BranchLatents",
    "BranchesRun",
    "DataError",
    "HookList",
    "HookListError",
    "HookPointError",
    "ModelLoadError",
    "ModelMismatchError",
    "PeHooksError",
    "PositionEraser",
    "PositionMap",
    "PositionalScheme",
    "RangeError",
    "Scheme",
    "SchemeError",
    "SweepResult",
    "UpstreamError",
    "UpstreamWarning",
    "__version__",
    "apply_hooks",
    "architectures",
    "branches",
    "constant",
    "fit_eraser",
    "frequency_bands",
    "inspect",
    "load_model",
    "project_out",
    "remove",
    "replace",
    "reverse",
    "run_branches",
    "scale",
    "shift",
    "shuffle",
    "sweep",
    "table",
    "zero",
]
