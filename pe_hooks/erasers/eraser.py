"""``PositionEraser``: fitted per-site erasure maps, usable as hooks or offline.

``hooks()`` returns the same ``HookList`` the intervention verbs return; ``transform()`` erases
activations you already cached (for UMAP); ``save()``/``load()`` round-trip bit-identically through
safetensors + JSON metadata.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pe_hooks.core.atomic import read_artefact, write_artefact
from pe_hooks.core.errors import (
    ArgumentError,
    ArtefactError,
    DataError,
    FitMismatchWarning,
    HookPointError,
    ModelMismatchError,
)
from pe_hooks.core.hooklist import HookList, bind_to_model
from pe_hooks.core.types import HookFn, Model
from pe_hooks.core.validate import check_fingerprint, check_model
from pe_hooks.data.labels import check_token_positions
from pe_hooks.erasers.methods import POSITIONAL_METHODS, ErasureMap, SiteMap
from pe_hooks.erasers.quadratic import QuadraticMap
from pe_hooks.sites.inspect import inspect
from pe_hooks.sites.positions import PositionSource, position_source

FORMAT_VERSION = 1
#: the map type of each method (``state_dict`` / ``from_state_dict``)
MAP_TYPES: dict[str, type[SiteMap] | type[QuadraticMap]] = {
    "leace": SiteMap, "mean": SiteMap, "pca": SiteMap, "quadratic": QuadraticMap,
}


@dataclass
class EraserInfo:
    """What an eraser was fitted on (saved as JSON beside the tensors)."""

    model_name: str
    d_model: int
    n_layers: int
    method: str
    site: str
    features: str
    max_position: int
    exempt_first: bool
    sequential: bool
    fit_tokens: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # core.validate.model_fingerprint


class PositionEraser:
    """Per-site erasure maps keyed by hook name (``blocks.l.hook_resid_pre``...).

    Attributes:
        maps: the fitted map of each hook point.
        info: what the eraser was fitted on (saved beside the tensors).
        model: the model it was fitted on or loaded for, if any: ``hooks()`` uses it when called
            without a model.
    """

    def __init__(self, maps: dict[str, ErasureMap], info: EraserInfo, model: Model | None = None) -> None:
        if not maps:
            raise DataError("an eraser needs at least one site")
        self.maps = maps
        self.info = info
        self.model = model

    # ------------------------------------------------------------------ introspection
    @property
    def hook_names(self) -> list[str]:
        return list(self.maps)

    @property
    def method(self) -> str:
        return self.info.method

    def __repr__(self) -> str:
        ranks = sorted({m.rank for m in self.maps.values()})
        return (
            f"PositionEraser({self.info.method}, {len(self.maps)} sites at {self.info.site}, "
            f"model={self.info.model_name}, rank={ranks[0] if len(ranks) == 1 else ranks}, "
            f"positions<= {self.info.max_position})"
        )

    def site_for(self, hook_name: str | None = None, layer: int | None = None) -> ErasureMap:
        if hook_name is None and layer is None:
            if len(self.maps) == 1:
                return next(iter(self.maps.values()))
            raise DataError(f"this eraser has {len(self.maps)} sites: pass hook_name= or layer=")
        name = hook_name if hook_name is not None else f"blocks.{layer}.hook_{self.info.site}"
        if name not in self.maps:
            raise HookPointError(
                f"no eraser fitted for '{name}'; fitted: {', '.join(self.maps)} (pass one of those as hook_name=, "
                "or fit the eraser at this layer)"
            )
        return self.maps[name]

    # ------------------------------------------------------------------ apply
    def transform(
        self, x: Any, *, hook_name: str | None = None, layer: int | None = None, positions: Any = None
    ) -> Any:
        """Erase cached activations ``x`` ``[..., d]`` (numpy in -> numpy out, torch -> torch).

        ``positions`` (same leading shape) are needed for method "mean"; with
        ``exempt_first`` (the default) tokens at position 0 are left as they are when positions
        are given.
        """
        is_np = isinstance(x, np.ndarray)
        try:
            xt = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"cannot erase a {type(x).__name__}; pass activations as a float tensor or array [..., d]") from exc
        if xt.ndim == 0 or xt.shape[-1] != self.info.d_model:
            raise DataError(
                f"activations have d={xt.shape[-1] if xt.ndim else 0} but the eraser was fitted on d={self.info.d_model}; "
                "erase activations of the model and site it was fitted on"
            )
        if not xt.is_floating_point():
            raise DataError(f"activations to erase must be floats, got {xt.dtype}; convert with .float()")
        if not bool(torch.isfinite(xt).all()):
            raise DataError("activations to erase contain NaN or inf; drop or fix those rows first")
        pt = None if positions is None else check_token_positions(positions, tuple(xt.shape[:-1]))
        site = self.site_for(hook_name, layer)
        if self.info.sequential and site is not next(iter(self.maps.values())):
            warnings.warn(
                "this eraser was fitted sequentially (each layer on states already erased upstream, for "
                "in-model use with eraser.hooks(model)); applied offline to a layer's raw cached states it "
                "meets a distribution it was not fitted on. For offline erasure fit with "
                "pe_hooks.fit_eraser(model, data, sequential=False).",
                FitMismatchWarning, stacklevel=2,
            )
        out = site.apply(xt, pt)
        if pt is not None and self.info.exempt_first:
            out = torch.where((pt == 0)[..., None], xt.to(out.dtype), out)
        return out.numpy() if is_np else out

    def hooks(self, model: Model | None = None) -> HookList:
        """TransformerLens ``(name, fn)`` hooks that erase every fitted site during a forward.

        ``model`` (default: the model the eraser was fitted on or loaded for) is checked against
        the eraser's fingerprint, and the hooks are bound to it: run on another model they raise
        ``ModelMismatchError``. An eraser loaded without a model needs one here. With method "mean"
        or ``exempt_first``, its position source records each forward's real positions.
        """

        if len(self.maps) > 1 and not self.info.sequential:
            warnings.warn(
                f"this eraser was fitted on clean states at each of its {len(self.maps)} sites independently; "
                "inside the model every site is erased at once, so each downstream map meets erased inputs it "
                "was not fitted on and position leaks back (SmolLM2: benchmarks/results/inmodel-erasure.md). "
                "For in-model use refit with pe_hooks.fit_eraser(model, data) (sequential by default); "
                "for cached activations use eraser.transform.",
                FitMismatchWarning, stacklevel=2,
            )
        src: PositionSource | None = None
        needs_pos = self.info.method in POSITIONAL_METHODS or self.info.exempt_first
        if model is None:
            model = self.model
        if model is None and (needs_pos or self.info.fingerprint):
            raise ArgumentError(
                "this eraser has no model to run on (it was loaded without one): pass the model, "
                "eraser.hooks(model), which also checks it is the model the eraser was fitted on"
            )
        if model is not None:
            self.check_model(model)
        if needs_pos:
            assert model is not None
            src = position_source(model, inspect(model))
        pairs: list[tuple[str, HookFn]] = list(src.hooks) if src is not None else []
        for name, site in self.maps.items():
            pairs.append((name, erase_hook(site, src, self.info.exempt_first, self.info.d_model)))
        hooks = HookList(pairs, label=f"erase({self.info.method}, {len(self.maps)} x {self.info.site})")
        # its maps were fitted on that model's activations: run elsewhere it refuses (core.hooklist)
        return bind_to_model(hooks, model) if model is not None else hooks

    def check_model(self, model: Model) -> None:
        """Raise ``ModelMismatchError`` if ``model`` is not the model this eraser was fitted on
        (sizes, architecture and a checksum of its weights, saved with the eraser)."""
        check_model(model, "PositionEraser.hooks")
        cfg = model.cfg
        if self.info.n_layers and (int(cfg.d_model) != self.info.d_model or int(cfg.n_layers) != self.info.n_layers):
            raise ModelMismatchError(
                f"eraser fitted on {self.info.model_name} (d_model {self.info.d_model}, {self.info.n_layers} "
                f"layers) cannot run on a model with d_model {cfg.d_model}, {cfg.n_layers} layers; "
                "fit an eraser on this model"
            )
        check_fingerprint(self.info.fingerprint, model, f"this eraser (fitted on '{self.info.model_name}')")
        missing = [n for n in self.maps if n not in model.hook_dict]
        if missing:
            raise ModelMismatchError(f"hook points {missing[:3]} do not exist on this model; fit an eraser on this model")

    # ------------------------------------------------------------------ io
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (a folder): ``eraser.safetensors`` + ``eraser.json``, atomically.

        The folder appears complete (with a completeness marker and the format version) or not
        at all; an earlier eraser saved there is replaced whole.
        """
        tensors = {f"{i}.{key}": v for i, m in enumerate(self.maps.values()) for key, v in m.state_dict().items()}
        meta = {"format": FORMAT_VERSION, "sites": list(self.maps), "info": asdict(self.info)}
        with write_artefact(path, "eraser", FORMAT_VERSION, replaces=("eraser.json", "eraser.safetensors")) as tmp:
            save_file(tensors, str(tmp / "eraser.safetensors"))
            (tmp / "eraser.json").write_text(json.dumps(meta, indent=2))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, model: Model | None = None) -> PositionEraser:
        """Read an eraser saved by ``save``; with ``model``, check it fits that model.

        Raises:
            ArtefactError: the folder is missing, a file, incomplete (an interrupted save), corrupt
                or of another format version.
            ModelMismatchError: ``model`` is not the model the eraser was fitted on.
        """
        fix = "fit the eraser again and save it with eraser.save(path)"
        read_artefact(path, "eraser", FORMAT_VERSION, fix=fix)
        folder = Path(path)
        meta_path, tensor_path = folder / "eraser.json", folder / "eraser.safetensors"
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_file(str(tensor_path))
            saved = dict(meta["info"])
            if "exclude_first" in saved:  # the field's name before version 0.2
                saved["exempt_first"] = saved.pop("exclude_first")
            info = EraserInfo(**saved)
            if info.method not in MAP_TYPES or not meta["sites"]:
                raise ValueError(f"method {info.method!r}, sites {meta['sites']!r}")
            maps: dict[str, ErasureMap] = {}
            for i, name in enumerate(meta["sites"]):
                prefix = f"{i}."
                own = {key[len(prefix):]: v for key, v in tensors.items() if key.startswith(prefix)}
                maps[name] = MAP_TYPES[info.method].from_state_dict(own, method=info.method)
        except Exception as exc:  # json, safetensors (SafetensorError), missing keys, wrong fields...
            raise ArtefactError(f"{folder} holds a corrupt eraser ({type(exc).__name__}: {exc}); {fix}") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise ArtefactError(f"unsupported eraser format {meta.get('format')}; {fix}")
        if model is not None:
            cls(maps, info).check_model(model)
            name = getattr(model.cfg, "model_name", None)
            if name is not None and name != info.model_name and not info.fingerprint:
                raise ModelMismatchError(f"eraser was fitted on '{info.model_name}', not on '{name}'")
        return cls(maps, info, model)


def erase_hook(site: ErasureMap, src: Any, exempt_first: bool, d_model: int) -> HookFn:
    """The hook that applies one site's map; ``src.get(x)`` gives the positions of ``x`` (None
    when the map needs none), and position 0 is left untouched when ``exempt_first``."""
    def fn(x: torch.Tensor, hook: Any) -> torch.Tensor:
        if x.shape[-1] != d_model:
            raise ModelMismatchError(
                f"the eraser was fitted on activations of width {d_model}, {hook.name} has {x.shape[-1]}; "
                "fit an eraser on this model"
            )
        t = src.get(x) if src is not None else None
        out = site.apply(x, t)
        if exempt_first and t is not None:
            out = torch.where((t == 0)[..., None], x, out)
        return out

    return fn
