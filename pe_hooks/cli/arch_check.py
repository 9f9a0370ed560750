"""Each verb on a tiny instance of one architecture vs the HF model edited by hand.

``reference_check(name)`` builds two identical seeded instances of ``name`` (``models.tiny.build_arch``):
one booted into a ``TransformerBridge``, one kept as plain HF (eager attention) and edited by hand
as the independent reference of each verb:

- ``bare``: no hooks at all (the bridge must reproduce HF before any verb can be checked);
- ``zero``: every ``*inv_freq`` buffer of the HF rotary modules set to 0 (no rotation, the tables
  become the attention scaling);
- ``bands``: only the highest half of the bands zeroed (``inv_freq[bands] = 0``);
- ``remove``: the HF rotary modules patched to return the mean of their own tables over the
  sequence's positions ``0..n-1``, for every token;
- ``replace``: ``position_ids = n - 1 - arange`` (``reverse(n)``: a shift would change nothing, RoPE
  being relative);
- ``rot_qk``: ``reverse(n)`` at ``site="rot_qk"`` (where the model's ``hook_rot_q/k`` carry whole heads);
- ``kv_cache``: greedy cached decoding under ``replace(reverse(64))`` vs one full forward under the same hooks.

The other schemes (issue 25), each with ``bare`` first:

- absolute tables, learned or sinusoidal, any row offset, every stack (``learned_check``): the
  reference's rows of the positions in use zeroed / averaged / re-indexed by ``shift(3)`` and
  ``reverse(12)`` / projected off their top-3 principal directions (encoder-decoder models get
  the same explicit ``decoder_input_ids``);
- relative bias (``relative_check``): ``relative_attention_bias`` zeroed (all, heads 1 and 3, the
  decoder only), set to each head's mean, or HF's own bucketing fed ``reverse(12)`` / ``scale(2)``
  distances;
- ALiBi (``alibi_check``): the modelling module's ``build_*alibi*`` patched (no bias, none on head
  1, ``slope * f(t_k)`` for ``reverse(12)`` / ``scale(3)``).

Each value is the largest absolute logit difference (float32). Used by ``tests/test_architectures.py``,
the per-scheme test files, and ``pe-hooks architectures`` (the coverage table).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

import pe_hooks as p
from pe_hooks.core.types import Model
from pe_hooks.models.kv_check import check_kv_cache
from pe_hooks.models.load import bridge_from_hf, tiny_tokenizer
from pe_hooks.models.tiny import build_arch
from pe_hooks.sites import rotary_frequencies
from pe_hooks.sites.relative import bucket_fn
from pe_hooks.sites.tables import STACKS, position_table

IDS = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12, 9, 15, 71, 5]])
TOL = 1e-5  # on logits, every verb (times the largest reference logit where that exceeds 1: T5 reaches ~40)
KV_TOL = 1e-4  # cached steps vs a full forward (SDPA vs eager accumulation order)


def build_pair(name: str, seed: int = 0) -> tuple[Model, Any]:
    """``(bridge, hf_reference)``: two identical seeded tiny instances of architecture ``name``."""
    tok = tiny_tokenizer()
    special = {k: int(v) for k, v in (("bos_token_id", tok.bos_token_id), ("eos_token_id", tok.eos_token_id),
                                       ("pad_token_id", tok.pad_token_id)) if v is not None}
    hf = build_arch(name, len(tok), special, seed)
    ref = build_arch(name, len(tok), special, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = bridge_from_hf(hf, tok, name=name)
    return bridge, ref


def _rotary_modules(hf: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in hf.modules() if any(n.endswith("inv_freq") for n, _ in m.named_buffers(recurse=False))]


@contextmanager
def inv_freq_edited(hf: torch.nn.Module, edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Every ``*inv_freq`` buffer of ``hf``'s rotary modules replaced by ``edit(buffer)``, then restored."""
    saved: list[tuple[torch.nn.Module, str, torch.Tensor]] = []
    for m in _rotary_modules(hf):
        for n, b in list(m.named_buffers(recurse=False)):
            if n.endswith("inv_freq"):
                saved.append((m, n, b.clone()))
                b.copy_(edit(b))
    try:
        yield
    finally:
        for m, n, b in saved:
            getattr(m, n).copy_(b)


@contextmanager
def mean_tables(hf: torch.nn.Module, n: int) -> Iterator[None]:
    """HF rotary modules patched to return, for every token, the mean of their tables over 0..n-1."""
    mods = _rotary_modules(hf)
    for m in mods:
        orig = m.forward

        def forward(x: torch.Tensor, position_ids: torch.Tensor, *a: Any, orig: Any = orig, **k: Any) -> Any:
            full = orig(x, position_ids, *a, **k)[0]  # the shape HF wants (position_ids may be [3, b, s]: M-RoPE)
            pos = torch.arange(n, device=position_ids.device).expand(*position_ids.shape[:-1], n)
            c, s = orig(x, pos, *a, **k)
            return c.mean(-2, keepdim=True).expand_as(full), s.mean(-2, keepdim=True).expand_as(full)

        m.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in mods:
            del m.forward


def _hf(ref: Any, ids: torch.Tensor, **kw: Any) -> torch.Tensor:
    with torch.no_grad():
        return ref(ids, **kw).logits.float()  # type: ignore[no-any-return]


def _bridge(g: Model, hooks: p.HookList, ids: torch.Tensor, **kw: Any) -> torch.Tensor:
    with torch.no_grad(), hooks.applied(g):
        return g(ids, **kw).float()  # type: ignore[no-any-return, operator]


def _d(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


#: decoder input ids given to both the bridge and HF on encoder-decoder models (HF's own default
#: differs per model: mBART wraps the last token, Blenderbot/Pegasus/M2M100 refuse no decoder ids)
DEC_IDS = torch.tensor([[1, 7, 40, 52, 61, 77, 90, 33]])  # no pad token (2): M2M100 numbers pads -1


def ref_tables(g: Model, ref: Any) -> list[tuple[Any, torch.Tensor, int]]:
    """``(facts, the reference's copy of that table, positions used)`` of each table the bridge edits
    (absolute tables, or the bucket tables of a relative bias)."""
    named = {**dict(ref.named_parameters()), **dict(ref.named_buffers())}
    own = {**dict(g.original_model.named_parameters()), **dict(g.original_model.named_buffers())}  # type: ignore[union-attr]
    out = []
    family = p.inspect(g).family
    entries: list[Any] = [*family.tables, *family.relative]
    for t in entries:
        table = position_table(g, t.hook)
        name = next(n for n, q in own.items() if q is table)
        name = name.replace("_original_component.", "").replace("original_component.", "")  # the bridge's wrapping
        n = (DEC_IDS if STACKS[t.hook] == "decoder" else IDS).shape[1]
        out.append((t, named[name], n))
    return out


@contextmanager
def tables_edited(tables: list[tuple[Any, torch.Tensor, int]], edit: Callable[[torch.Tensor, int], torch.Tensor]) -> Iterator[None]:
    """Each reference table's rows of positions ``0..n-1`` (rows ``offset..offset+n-1``) replaced
    by ``edit(rows of every position, n)``, then restored."""
    saved = [w.detach().clone() for _, w, _ in tables]
    with torch.no_grad():
        for t, w, n in tables:
            off = getattr(t, "offset", 0)
            w[off : off + n] = edit(w[off:].detach().clone(), n).to(w.dtype)
    try:
        yield
    finally:
        with torch.no_grad():
            for (_, w, _), old in zip(tables, saved, strict=True):
                w.copy_(old)


def _pcs(rows: torch.Tensor, k: int) -> torch.Tensor:
    centred = rows[1:].float() - rows[1:].float().mean(0)
    return torch.linalg.svd(centred, full_matrices=False)[2][:k]


#: each table verb and the hand edit of the reference's rows it must equal
TABLE_EDITS: dict[str, tuple[Callable[[Model], p.HookList], Callable[[torch.Tensor, int], torch.Tensor]]] = {
    "zero": (lambda g: p.zero(g), lambda w, n: torch.zeros_like(w[:n])),
    "remove": (lambda g: p.remove(g), lambda w, n: w[:n].mean(0, keepdim=True).expand(n, -1)),
    "replace": (lambda g: p.replace(g, p.shift(3)), lambda w, n: w[3 : n + 3]),  # moves the position, not the row
    "reverse": (lambda g: p.replace(g, p.reverse(12)), lambda w, n: w[:n].flip(0) if n == 12 else w[12 - n : 12].flip(0)),
    "project_out": (lambda g: p.project_out(g, k=3),
                    lambda w, n: w[:n] - (w[:n].float() @ _pcs(w, 3).T @ _pcs(w, 3)).to(w.dtype)),
}


def learned_check(g: Model, ref: Any) -> dict[str, float]:
    """Absolute position tables (learned or sinusoidal, any offset, every stack): each verb vs the
    reference's table rows edited by hand (zeroed, averaged, re-indexed, projected)."""
    kw = {"decoder_input_ids": DEC_IDS} if len(p.inspect(g).family.tables) > 1 else {}
    base = _hf(ref, IDS, **kw)
    with torch.no_grad():
        out = {"bare": _d(g(IDS, **kw).float(), base)}  # type: ignore[operator]
    tables = ref_tables(g, ref)
    for verb, (hooks, edit) in TABLE_EDITS.items():
        with tables_edited(tables, edit):
            want = _hf(ref, IDS, **kw)
        out[verb] = _d(_bridge(g, hooks(g), IDS, **kw), want)
        out[f"{verb}:effect"] = _d(want, base) / (float(base.abs().max()) or 1.0)
    return out


@contextmanager
def buckets_mapped(ref: Any, f: Callable[[torch.Tensor], torch.Tensor], decoder_only: bool = False) -> Iterator[None]:
    """The reference's relative-bias modules bucket ``f(t_k) - f(t_q)`` instead of ``t_k - t_q``
    (their own ``_relative_position_bucket`` on the mapped distances), then restored."""
    owners = [m for m in ref.modules() if getattr(m, "relative_attention_bias", None) is not None
              and hasattr(m, "_relative_position_bucket") and (m.is_decoder or not decoder_only)]
    for m in owners:
        orig = m._relative_position_bucket

        def mapped(rel: torch.Tensor, *a: Any, orig: Any = orig, **k: Any) -> Any:
            q, n = rel.shape[-2:]
            tq, tk = torch.arange(n - q, n, device=rel.device), torch.arange(n, device=rel.device)
            return orig((f(tk)[None, :] - f(tq)[:, None]).round().long(), *a, **k)

        m._relative_position_bucket = mapped
    try:
        yield
    finally:
        for m in owners:
            del m._relative_position_bucket


def _mean_edited(g: Model, tables: list[tuple[Any, torch.Tensor, int]]) -> Any:
    """Each reference bias table set, per head, to its mean over the (query, key) pairs its stack
    attends to (the decoder: past keys only), with the model's own bucketing: one constant per head."""
    edited = []
    for rel, w, n in tables:
        d = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        used = torch.ones(n, n, dtype=torch.bool) if rel.bidirectional else d <= 0
        rows = w.detach()[bucket_fn(g, rel.hook)(d)][used]  # type: ignore[misc]
        if rel.windowed:  # a block window, not the sequence: any constant per head (softmax-equivalent)
            rows = w.detach()
        edited.append(((rel, w, n), rows.mean(0)))
    stack = contextlib.ExitStack()
    for entry, mean in edited:
        def const(w: torch.Tensor, n: int, mean: torch.Tensor = mean) -> torch.Tensor:
            return mean.expand_as(w)

        stack.enter_context(tables_edited([entry], const))
    return stack


def relative_check(g: Model, ref: Any) -> dict[str, float]:
    """Relative position bias (T5): each verb vs the reference's ``relative_attention_bias`` tables
    edited by hand (zeroed, per head, per stack, set to each head's mean) or its bucketing fed the
    mapped distances."""
    kw = {"decoder_input_ids": DEC_IDS}
    base = _hf(ref, IDS, **kw)
    with torch.no_grad():
        out = {"bare": _d(g(IDS, **kw).float(), base)}  # type: ignore[operator]
    out["bare:scale"] = float(base.abs().max())  # T5's logits reach ~40: the tolerance is relative to them
    tables = ref_tables(g, ref)
    windowed = any(r.windowed for r in p.inspect(g).family.relative)

    def zero_heads(w: torch.Tensor, n: int) -> torch.Tensor:
        w = w.clone()
        w[:, [1, 3]] = 0
        return w

    cases: dict[str, tuple[p.HookList, Any]] = {
        "zero": (p.zero(g), lambda: tables_edited(tables, lambda w, n: torch.zeros_like(w))),
        "zero_heads": (p.zero(g, heads=[1, 3]), lambda: tables_edited(tables, zero_heads)),
        "zero_decoder": (p.zero(g, stacks="decoder"),
                         lambda: tables_edited([t for t in tables if t[0].hook != "hook_pos_embed"], lambda w, n: torch.zeros_like(w))),
        "remove": (p.remove(g), lambda: _mean_edited(g, tables)),
        "replace": (p.replace(g, p.reverse(12), stacks="decoder" if windowed else None),
                    lambda: buckets_mapped(ref, lambda t: 11 - t.float(), decoder_only=windowed)),
        "scale": (p.replace(g, p.scale(2.0), stacks="decoder" if windowed else None),
                  lambda: buckets_mapped(ref, lambda t: 2 * t.float(), decoder_only=windowed)),
    }
    for verb, (hooks, edited) in cases.items():
        with edited():
            want = _hf(ref, IDS, **kw)
        out[verb] = _d(_bridge(g, hooks, IDS, **kw), want)
        out[f"{verb}:effect"] = _d(want, base) / (float(base.abs().max()) or 1.0)
    return out


@contextmanager
def alibi_builder_patched(ref: Any, n_heads: int, n: int, f: Callable[[torch.Tensor], torch.Tensor] | None,
                          heads: list[int] | None = None) -> Iterator[None]:
    """Every ALiBi builder function of the reference's modelling module (``build_alibi_tensor``,
    ``build_mpt_alibi_tensor``...) made to return ``slope * f(t_k)`` (``f=None``: no bias) for the
    chosen heads: the slopes and key positions read from its own output ``[(b *) h, 1, K]`` (MPT
    builds ``K = max_seq_len`` keys and keeps the last ``n``)."""
    import sys

    mod = sys.modules[type(ref).__module__]
    names = [k for k, v in vars(mod).items() if k.startswith("build_") and "alibi" in k and callable(v) and not isinstance(v, type)]
    saved = {k: getattr(mod, k) for k in names}

    def wrap(orig: Any) -> Any:
        def built(*a: Any, **k: Any) -> torch.Tensor:
            out = orig(*a, **k)
            o = out.float()
            m = o[..., 1:2] - o[..., 0:1]
            t = ((o - o[..., :1]) / m.where(m != 0, torch.ones_like(m))).round() - max(0, o.shape[-1] - n)
            new = torch.zeros_like(o) if f is None else m * f(t.clamp(min=0))
            sel = torch.ones(o.shape[0], dtype=torch.bool)
            if heads is not None:
                sel = torch.isin(torch.arange(o.shape[0]) % n_heads, torch.tensor(heads))
            return torch.where(sel.view(-1, *[1] * (o.ndim - 1)), new, o).to(out.dtype)

        return built

    for k in names:
        setattr(mod, k, wrap(saved[k]))
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(mod, k, v)


def alibi_check(g: Model, ref: Any) -> dict[str, float]:
    """ALiBi: each verb vs the reference's ALiBi builder patched (no bias, chosen heads, mapped key
    positions; ``remove`` is ``zero`` for ALiBi, a per-row constant)."""
    mask = {"attention_mask": torch.ones_like(IDS)}  # HF BLOOM builds ALiBi only from a given mask
    base = _hf(ref, IDS, **mask)
    with torch.no_grad():
        out = {"bare": _d(g(IDS).float(), base)}  # type: ignore[operator]
    h, n = int(g.cfg.n_heads), IDS.shape[1]
    cases: dict[str, tuple[p.HookList, Any]] = {
        "zero": (p.zero(g), None), "remove": (p.remove(g), None),
        "zero_heads": (p.zero(g, heads=[1]), ("heads", [1])),
        "replace": (p.replace(g, p.reverse(n)), lambda t: n - 1 - t),
        "scale": (p.replace(g, p.scale(3.0)), lambda t: 3 * t),
    }
    for verb, (hooks, how) in cases.items():
        heads = how[1] if isinstance(how, tuple) else None
        f = how if callable(how) else None
        with alibi_builder_patched(ref, h, n, f, heads):
            want = _hf(ref, IDS, **mask)
        out[verb] = _d(_bridge(g, hooks, IDS), want)
        out[f"{verb}:effect"] = _d(want, base) / (float(base.abs().max()) or 1.0)
    return out


def reference_check(
    name: str, verbs: tuple[str, ...] | None = None, pair: tuple[Model, Any] | None = None
) -> dict[str, float]:
    """Max |logit difference| of each verb on ``name`` vs its hand-edited HF reference (see module doc).

    ``pair``: a ``build_pair(name)`` already built (else one is built here).
    Raises ``SchemeError`` when pe-hooks refuses the architecture (``PositionalScheme.refused``).
    """
    g, ref = pair if pair is not None else build_pair(name)
    sites = p.inspect(g)
    sites.require_positions()
    if sites.scheme in (p.Scheme.LEARNED, p.Scheme.SINUSOIDAL):
        return learned_check(g, ref)
    if sites.scheme is p.Scheme.RELATIVE:
        return relative_check(g, ref)
    if sites.scheme is p.Scheme.ALIBI:
        return alibi_check(g, ref)
    if sites.scheme is not p.Scheme.ROTARY:
        return {}
    ids = IDS
    pos = torch.arange(ids.shape[1])[None]
    out: dict[str, float] = {}
    base = _hf(ref, ids)
    with torch.no_grad():
        out["bare"] = _d(g(ids).float(), base)  # type: ignore[operator]
    want = verbs or ("zero", "bands", "remove", "replace", "rot_qk", "kv_cache")

    def record(verb: str, got: torch.Tensor, expected: torch.Tensor) -> None:
        out[verb] = _d(got, expected)
        out[f"{verb}:effect"] = _d(expected, base) / (float(base.abs().max()) or 1.0)  # the check could fail

    if "zero" in want:
        with inv_freq_edited(ref, torch.zeros_like):
            record("zero", _bridge(g, p.zero(g), ids), _hf(ref, ids))
    if "bands" in want:
        first = sites.rotary_layers[0]
        n_bands = rotary_frequencies(g, first)[0].numel()
        bands = p.frequency_bands(g, "high", max(1, n_bands // 2), layer=first)

        def masked(b: torch.Tensor) -> torch.Tensor:
            b = b.clone()
            b[..., bands] = 0
            return b

        with inv_freq_edited(ref, masked):
            record("bands", _bridge(g, p.zero(g, bands=bands), ids), _hf(ref, ids))
    if "remove" in want:
        with mean_tables(ref, ids.shape[1]):
            record("remove", _bridge(g, p.remove(g), ids), _hf(ref, ids))
    if "replace" in want:
        rev = p.reverse(ids.shape[1])
        record("replace", _bridge(g, p.replace(g, rev), ids), _hf(ref, ids, position_ids=pos.flip(-1)))
    if "rot_qk" in want and sites.rot_q:
        rev = p.reverse(ids.shape[1])
        record("rot_qk", _bridge(g, p.replace(g, rev, site="rot_qk"), ids), _hf(ref, ids, position_ids=pos.flip(-1)))
    if "kv_cache" in want:
        with p.replace(g, p.reverse(64)).applied(g):
            out["kv_cache"] = check_kv_cache(g, refresh=True).max_abs_error
    return out


#: an edit must move the reference's logits by at least this (relative to their largest value)
MIN_EFFECT = 1e-4


def passed(result: dict[str, float]) -> dict[str, bool]:
    """Which verbs of a ``reference_check`` result are within tolerance, with an edit whose effect
    on the reference is large enough that the check could fail."""
    ok: dict[str, bool] = {}
    scale = max(1.0, result.get("bare:scale", 1.0))  # logits larger than 1 (T5): a relative tolerance
    for k, v in result.items():
        if ":" in k:
            continue
        effect = result.get(f"{k}:effect", 1.0)
        ok[k] = v <= (KV_TOL if k == "kv_cache" else TOL) * scale and effect >= MIN_EFFECT
    return ok
