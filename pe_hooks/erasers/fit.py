"""Fitting position erasers from a model and data, or from arrays you already have."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pe_hooks.core.errors import DataError, UnderfitWarning
from pe_hooks.core.hooklist import HookList
from pe_hooks.core.types import HookFn, Model
from pe_hooks.core.validate import check_bool, check_int, check_model, model_fingerprint
from pe_hooks.data import TokenData, load_data, stream_activations
from pe_hooks.data.labels import check_token_positions
from pe_hooks.data.stream import check_finite_acts
from pe_hooks.erasers.eraser import EraserInfo, PositionEraser, erase_hook
from pe_hooks.erasers.methods import ErasureMap, Fitter
from pe_hooks.erasers.options import EraserMethod, Leace, as_method
from pe_hooks.sites.inspect import inspect
from pe_hooks.sites.scheme import RESID_SITES, PositionalScheme


def _check_enough_tokens(method: EraserMethod, tokens: int, d_model: int) -> None:
    """A LEACE fit needs more tokens than dimensions of its position code, else the eraser is
    whatever a handful of tokens happen to say (a silent, degenerate eraser); any fit on fewer
    tokens than the model's width is warned about (``UnderfitWarning``)."""
    _warn_if_underfit(tokens, d_model)
    if not isinstance(method, Leace):
        return
    if tokens <= method.z_dim:
        raise DataError(
            f"only {tokens} tokens to fit a {method.z_dim}-dimensional position code: the eraser would be degenerate; "
            "fit on more sequences (n_seqs) or longer ones (seq_len)"
        )


def _tokens(
    x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, exempt_first: bool, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens a fitter sees (every fit path): the real ones, position 0 left out with
    ``exempt_first``, checked to be finite (a ``DataError`` naming the site ``where``)."""
    keep = mask.bool() & ((pos > 0) if exempt_first else torch.ones_like(mask, dtype=torch.bool))
    xs = x[keep]
    check_finite_acts(xs, where)
    return xs, pos[keep]


def _warn_if_underfit(tokens: int, d_model: int) -> None:
    """``UnderfitWarning`` if an eraser is fitted on fewer tokens than the model's width."""
    if tokens < d_model:
        warnings.warn(
            f"the eraser is fitted on {tokens} tokens, fewer than d_model {d_model}: its maps are mostly estimation "
            "noise and position stays decodable out of sample; fit on more tokens: more sequences (n_seqs= of "
            "fit_eraser, n_fit= of sweep) or longer ones (seq_len=)",
            UnderfitWarning, stacklevel=4,
        )


ONE_PASS_BYTES = 2 * 2**30
"""Sequential fits run every fit sequence as ONE batch when its forward needs at most this much
activation memory (estimate: ``_forward_bytes``), else one partial forward per site."""


def _forward_bytes(model: Model, td: TokenData) -> int:
    """Rough peak activation memory of one forward over all of ``td`` as a single batch: the
    residual stream and MLP hidden states of every token, and one layer's attention scores (measured
    on SmolLM2, 160 x 64 tokens: estimate 0.62 GB, peak RSS 0.7 GB above the loaded model)."""
    cfg = model.cfg
    d = int(cfg.d_model)
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d)
    n_tokens = len(td) * td.seq_len
    return 4 * (n_tokens * (16 * d + 4 * d_mlp) + 2 * len(td) * int(cfg.n_heads) * td.seq_len**2)


class _Fitted(Exception):
    """Raised by the last site's fitting hook to end the fitting forward early."""


class _Positions:
    """The position source of a single, known batch (see ``eraser.erase_hook``)."""

    def __init__(self, positions: torch.Tensor) -> None:
        self.positions = positions

    def get(self, x: torch.Tensor) -> torch.Tensor:
        return self.positions.to(x.device)


def _fit_sequential_one_pass(
    model: Model, td: TokenData, names: list[str], fitters: dict[str, Any], exempt_first: bool, d_model: int,
    progress: bool,
) -> dict[str, ErasureMap]:
    """Sequential fit in one forward: every fit sequence in one batch, and at each site (in forward
    order) a hook that fits that site's map on the batch's states -- already erased upstream --
    then returns them erased. The same maps as one partial forward per site (same tokens, same
    upstream erasure), at the cost of one forward instead of ``~n_layers / 2``."""
    maps: dict[str, ErasureMap] = {}
    positions, mask = td.positions, td.mask
    src = _Positions(positions)
    bar = tqdm(total=len(names), desc="fit (sequential, one pass)", disable=not progress, leave=False)

    def fit_then_erase(name: str) -> HookFn:
        def fn(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
            xs, t = _tokens(x.reshape(-1, d_model), positions.reshape(-1).to(x.device), mask.reshape(-1).to(x.device),
                            exempt_first, name)
            fitters[name].update(xs, t)
            maps[name] = fitters[name].finish()
            bar.update(1)
            if name == names[-1]:
                raise _Fitted  # nothing downstream is needed: skip the rest of the forward (and the logits)
            return erase_hook(maps[name], src, exempt_first, d_model)(x, hook)

        return fn

    hooks = HookList([(n, fit_then_erase(n)) for n in names], label="fit sequentially")
    try:
        for _ in stream_activations(model, td, [names[-1]], batch_size=len(td), hooks=hooks, progress=False):
            pass
    except _Fitted:
        pass
    finally:
        bar.close()
    missing = [n for n in names if n not in maps]
    if missing:  # a site the forward never reached: a bug, never a silent half-fitted eraser
        raise DataError(f"the fitting forward never reached {missing}; fit with hook_names in forward order")
    return maps


def fit_eraser(
    model: Model,
    data: Any = None,
    *,
    method: str | EraserMethod = "leace",
    site: str = "resid_pre",
    layers: list[int] | range | None = None,
    sequential: bool | None = None,
    exempt_first: bool = True,
    seq_len: int = 64,
    n_seqs: int | None = 384,
    batch_size: int = 16,
    progress: bool = True,
    hook_names: list[str] | None = None,
    features: str | None = None,
    n_freqs: int | None = None,
    n_bins: int | None = None,
    k: int | None = None,
    var: float | None = None,
    denoise: bool | None = None,
) -> PositionEraser:
    """Fit a positional eraser at ``site`` of each layer in ``layers`` (all by default).

    Args:
        data: anything ``pe_hooks.data.load_data`` takes (``None`` = the embedded corpus). Fit on
            sequences you will NOT evaluate on.
        method: the method and its options, one object each (``pe_hooks.erasers.options``):
            ``Leace(features="fourier", n_freqs=8)`` (default), ``Mean(denoise=True)``, ``Pca(k=None,
            var=0.9)``, ``Quadratic(n_bins=8, pool=0.0)`` (bins as classes; it leaks position out of
            sample unless every bin has several times ``d_model`` tokens); or a method's name.
        features, n_freqs, n_bins, k, var, denoise: the name form, ``method="pca", k=3`` (a keyword
            of another method is ignored).
        n_seqs: sequences of ``data`` to fit on (``None``: all). Default 384: measured on SmolLM2
            with an independent held-out probe (``benchmarks/results/inmodel-erasure.md``), 160 left
            layer 1 more than 0.05 above the token floor in-model.
        sequential: fit layer ``l`` on states already erased at layers ``< l`` (concept-scrubbing
            style: one forward with every fit sequence in one batch, each site fitted and then erased
            by its hook; one partial forward per site, over batches, when that batch would need more
            than ``ONE_PASS_BYTES`` of activations), so ``eraser.hooks(model)``, which erases every
            layer at once, meets at each layer the distribution its map was fitted on. ``None``
            (default): sequential whenever more than one site is fitted — the right eraser for
            in-model use. ``False``: every layer from clean states in one pass — the right eraser
            for ``eraser.transform`` on each layer's own cached activations (offline). Measured on
            SmolLM2 (``benchmarks/results/inmodel-erasure.md``): in-model, an independently fitted
            eraser leaves a held-out probe well above the token floor; the sequential one does not.
        exempt_first: leave position 0 / BOS out of the fit and untouched when applied (its
            massive activations would dominate the statistics).
        hook_names: fit exactly these residual hook points instead of ``site`` x ``layers``
            (e.g. to include the final ``blocks.{n-1}.hook_resid_post``).

    Returns:
        A ``PositionEraser``; ``eraser.hooks(model)`` erases inside the model, ``eraser.transform(x)``
        erases cached activations. Positions beyond ``seq_len - 1``: "leace" and "pca" do not look at
        positions when applied; "mean" raises.
    """
    opts = as_method(method, features=features, n_freqs=n_freqs, n_bins=n_bins, k=k, var=var, denoise=denoise)
    check_model(model, "fit_eraser")
    check_int(batch_size, "batch_size", minimum=1)
    check_int(seq_len, "seq_len", minimum=2)
    if n_seqs is not None:
        check_int(n_seqs, "n_seqs", minimum=1, fix="fit on at least one sequence (384 by default)")
    check_bool(exempt_first, "exempt_first")
    if sequential is not None:
        check_bool(sequential, "sequential")
    sites = inspect(model)
    names, sequential = _fit_sites(sites, site, layers, hook_names, sequential)
    td: TokenData = load_data(model, data, seq_len=seq_len, n_seqs=n_seqs, at_most=True)
    T = _max_position(td, exempt_first)
    _check_enough_tokens(opts, int(td.mask[:, 1:].sum()) if exempt_first else int(td.mask.sum()), sites.d_model)
    fitters = {n: opts.fitter(sites.d_model, T) for n in names}
    info = EraserInfo(
        model_name=sites.model_name, d_model=sites.d_model, n_layers=sites.n_layers, method=opts.name,
        site=site, features=getattr(opts, "features", "fourier"), max_position=T, exempt_first=exempt_first,
        sequential=sequential, options=asdict(opts), fingerprint=model_fingerprint(model),
    )
    maps = _fit(model, td, names, fitters, info, batch_size, progress)
    info.fit_tokens = {n: f.n_tokens for n, f in fitters.items()}
    return PositionEraser(maps, info, model)


def _max_position(td: TokenData, exempt_first: bool) -> int:
    """The largest position fitted (``seq_len - 1``), if the sequences have two positions to fit."""
    T = td.seq_len - 1
    n_positions = T if exempt_first else T + 1
    if n_positions < 2:
        raise DataError(
            f"sequences of {td.seq_len} tokens give {n_positions} position(s) to fit"
            f"{' (position 0 / BOS is exempt)' if exempt_first else ''}: nothing varies with position; "
            "use seq_len >= 3 (64 by default)"
        )
    return T


def _fit_sites(
    sites: PositionalScheme, site: str, layers: list[int] | range | None, hook_names: list[str] | None,
    sequential: bool | None,
) -> tuple[list[str], bool]:
    """``(hook points to fit, in the order they are fitted; whether sequentially)``: ``site`` x
    ``layers`` (all by default) or exactly ``hook_names``; sequential by default when there are
    several, and then in forward order (each site is fitted on states erased at every site before it)."""
    if site not in sites.resid:
        raise DataError(f"site '{site}' does not exist on {sites.architecture}; available: {', '.join(sites.resid)}")
    lay = sites.check_layers(list(range(sites.n_layers)) if layers is None else layers)
    names = _site_names(sites, site, lay, hook_names)
    sequential = len(names) > 1 if sequential is None else sequential
    return (_forward_order(sites, names) if sequential else names), sequential


def _forward_order(sites: PositionalScheme, names: list[str]) -> list[str]:
    """``names`` once each, in the order a forward reaches them."""
    order = [group[layer] for layer in range(sites.n_layers) for site_ in RESID_SITES
             for group in [sites.resid.get(site_, ())] if layer < len(group)]
    return sorted(dict.fromkeys(names), key=order.index)


def _site_names(sites: PositionalScheme, site: str, layers: list[int], hook_names: list[str] | None) -> list[str]:
    """The hook points to fit: ``site`` x ``layers``, or exactly ``hook_names`` (residual ones)."""
    if hook_names is None:
        return [sites.resid[site][layer] for layer in layers]
    known = {n for group in sites.resid.values() for n in group}
    if isinstance(hook_names, str) or not list(hook_names):
        raise DataError(
            f"hook_names={hook_names!r} selects no site; pass None (site x layers) or a list of residual hook "
            f"points such as ['{sites.resid[site][0]}']"
        )
    bad = [n for n in hook_names if n not in known]
    if bad:
        raise DataError(
            f"hook_names must be residual hook points of this model; not: {bad} (e.g. '{sites.resid[site][0]}')"
        )
    return list(hook_names)


def _fit(
    model: Model, td: TokenData, names: list[str], fitters: dict[str, Fitter], info: EraserInfo, batch_size: int,
    progress: bool,
) -> dict[str, ErasureMap]:
    """The maps of every site: in one pass from clean states, or sequentially (in one forward when
    it fits in ``ONE_PASS_BYTES``, else one partial forward per site, over batches)."""
    d, exempt_first = info.d_model, info.exempt_first
    if not info.sequential:
        for batch in stream_activations(model, td, names, batch_size=batch_size, progress=progress,
                                        desc=f"fit {info.method}"):
            for n in names:
                x, t = _tokens(batch.acts[n].reshape(-1, d), batch.positions.reshape(-1), batch.mask.reshape(-1),
                               exempt_first, n)
                fitters[n].update(x, t)
        return {n: f.finish() for n, f in fitters.items()}
    if _forward_bytes(model, td) <= ONE_PASS_BYTES:
        return _fit_sequential_one_pass(model, td, names, fitters, exempt_first, d, progress)
    maps: dict[str, ErasureMap] = {}
    for n in tqdm(names, desc=f"fit {info.method} (sequential)", disable=not progress):
        upstream = PositionEraser(dict(maps), info).hooks(model) if maps else None
        for batch in stream_activations(model, td, [n], batch_size=batch_size, hooks=upstream, progress=False):
            x, t = _tokens(batch.acts[n].reshape(-1, d), batch.positions.reshape(-1), batch.mask.reshape(-1),
                           exempt_first, n)
            fitters[n].update(x, t)
        maps[n] = fitters[n].finish()
    return maps


def fit_on_arrays(
    x: Any,
    positions: Any,
    *,
    method: str | EraserMethod = "leace",
    exempt_first: bool = True,
    name: str = "array",
    features: str | None = None,
    n_freqs: int | None = None,
    n_bins: int | None = None,
    k: int | None = None,
    var: float | None = None,
    denoise: bool | None = None,
) -> PositionEraser:
    """Fit an eraser on latents you already have: ``x`` ``[n, d]``, integer ``positions`` ``[n]``
    (``method`` and its options as in ``fit_eraser``)."""
    opts = as_method(method, features=features, n_freqs=n_freqs, n_bins=n_bins, k=k, var=var, denoise=denoise)
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    if xt.ndim != 2 or xt.shape[0] == 0:
        raise DataError(f"x must be a non-empty [n, d] array, got shape {tuple(xt.shape)}")
    pt = check_token_positions(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions,
                               (int(xt.shape[0]),))
    if not bool(torch.isfinite(xt).all()):
        raise DataError("x contains NaN or inf; drop or fix those rows first")
    used = pt[pt > 0] if exempt_first else pt
    if int(used.unique().numel()) < 2:
        raise DataError(
            f"the tokens to fit sit at {int(used.unique().numel())} distinct position(s)"
            f"{' (position 0 is exempt)' if exempt_first else ''}: nothing varies with position; pass tokens at two or "
            "more positions"
        )
    T = int(pt.max())
    f = opts.fitter(int(xt.shape[1]), T)
    keep = pt > 0 if exempt_first else torch.ones_like(pt, dtype=torch.bool)
    _check_enough_tokens(opts, int(keep.sum()), int(xt.shape[1]))
    f.update(xt[keep], pt[keep])
    info = EraserInfo(model_name="(arrays)", d_model=int(xt.shape[1]), n_layers=0, method=opts.name, site=name,
                      features=getattr(opts, "features", "fourier"), max_position=T, exempt_first=exempt_first,
                      sequential=False, fit_tokens={name: f.n_tokens}, options=asdict(opts))
    return PositionEraser({name: f.finish()}, info)
