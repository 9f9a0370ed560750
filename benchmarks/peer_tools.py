"""The same positional edit made four ways, for ``benchmarks/peers.py``.

Each way is a ``Way``: a forward (token ids -> logits) and, for causal models, a greedy generation
(prompt -> (tokens, per-step logits)), or the reason it cannot make the edit. The ways:

- **HF + torch hooks**: a plain ``register_forward_hook`` / ``register_forward_pre_hook`` on the HF
  module, attached and removed around each call (what a user writes by hand);
- **nnsight** (``TransformersModel`` / ``NNsight``): the module's ``.output`` (or ``.inputs``) set
  in a ``trace`` / ``generate``;
- **pyvene** (``IntervenableModel``): an intervention on ``<module>.output``; it acts on a module's
  output (for a tuple, its first element) or its first input only, so edits of ``position_ids``
  (the rotary module's second input) cannot be expressed;
- **pe-hooks** on the TransformerLens bridge: ``pe_hooks.zero(model)`` / ``replace(model, shift(k))``
  applied with ``HookList.applied``.

The reference is the HF model edited by hand: position table zeroed (learned), ``inv_freq`` zeroed
(rotary zero), ``position_ids`` edited (shift). nnsight and pyvene are optional (the benchmark
extra); ``peer(name)`` imports them lazily and says how to install them when they are missing.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

PEERS = {"nnsight": "nnsight==0.8.1", "pyvene": "pyvene==0.1.8"}
INSTALL = ("pip install -e '.[bench]' (or: pip install " + " ".join(PEERS.values()) + "), "
           "or run `make bench`, which builds .venv-bench from the lock")

Forward = Callable[[torch.Tensor], torch.Tensor]
Generate = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Way:
    """One tool's way of making one edit (``forward is None``: it cannot; ``why`` says why)."""

    tool: str
    forward: Forward | None = None
    generate: Generate | None = None
    why: str = ""
    wrong: str = ""  # set when the tool runs but makes another edit than the one asked (stated in the report)


def peer(name: str) -> Any | None:
    """The peer package, or ``None`` when it is not installed (the report then says how to install it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError:
        return None


def missing_note(name: str) -> str:
    return f"{name} is not installed: {INSTALL}"


def submodule(root: Any, path: str) -> Any:
    return functools.reduce(getattr, path.split("."), root)


@dataclass(frozen=True)
class Edit:
    """An edit: what the benchmark calls it and how the HF reference makes it."""

    key: str  # "zero positions" | "zero rotary" | "shift"
    path: str  # the HF module holding the positions: "transformer.wpe", "model.rotary_emb", ...
    k: int = 0  # the shift

    @property
    def title(self) -> str:
        return f"replace shift({self.k})" if self.key == "shift" else self.key


# ---- the reference and the plain-HF ways ----

def hf_forward(hf: Any, shift: int = 0) -> Forward:
    def run(ids: torch.Tensor) -> torch.Tensor:
        if shift:
            pos = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1) + shift
            return hf(ids, position_ids=pos).logits
        return hf(ids).logits
    return run


def hf_generate(hf: Any) -> Generate:
    def run(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                          output_logits=True, return_dict_in_generate=True)
        return out.sequences, torch.stack(out.logits)
    return run


def shifted_generate(hf: Any, k: int) -> Generate:
    """Greedy decoding with a KV cache and explicit ``position_ids`` (prompt at ``k..k+s-1``)."""
    def run(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = ids.shape[1]
        out = hf(ids, position_ids=torch.arange(s)[None] + k, use_cache=True)
        seq, steps = ids, [out.logits[:, -1]]
        for i in range(n - 1):
            nxt = steps[-1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
            out = hf(nxt, past_key_values=out.past_key_values, position_ids=torch.tensor([[s + i + k]]), use_cache=True)
            steps.append(out.logits[:, -1])
        seq = torch.cat([seq, steps[-1].argmax(-1, keepdim=True)], dim=1)
        return seq, torch.stack(steps)
    return run


def reference(edit: Edit, fresh: Any) -> tuple[Forward, Generate]:
    """The HF model edited by hand (``fresh``: an instance of its own, edited in place)."""
    if edit.key == "shift":
        return hf_forward(fresh, edit.k), shifted_generate(fresh, edit.k)
    with torch.no_grad():
        mod = submodule(fresh, edit.path)
        (mod.weight if edit.key == "zero positions" else mod.inv_freq).zero_()
    return hf_forward(fresh), hf_generate(fresh)


def _hand_hook(edit: Edit, mod: Any) -> Any:
    if edit.key == "zero positions":
        return mod.register_forward_hook(lambda m, a, out: torch.zeros_like(out))
    if edit.key == "zero rotary":  # no rotation: cos = attention_scaling, sin = 0
        return mod.register_forward_hook(
            lambda m, a, out: (torch.full_like(out[0], float(m.attention_scaling)), torch.zeros_like(out[1])))

    def pre(m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if len(args) > 1:
            return (args[0], args[1] + edit.k, *args[2:]), kwargs
        return args, {**kwargs, "position_ids": kwargs["position_ids"] + edit.k}

    return mod.register_forward_pre_hook(pre, with_kwargs=True)


def by_hand(edit: Edit, hf: Any) -> Way:
    """Plain torch hooks on the HF module, attached and removed around each call."""
    mod = submodule(hf, edit.path)
    fwd, gen = hf_forward(hf), hf_generate(hf)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        h = _hand_hook(edit, mod)
        try:
            return fwd(ids)
        finally:
            h.remove()

    def generate(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = _hand_hook(edit, mod)
        try:
            return gen(ids, n)
        finally:
            h.remove()

    return Way("HF + torch hooks", forward, generate)


# ---- nnsight ----

def _nnsight_edit(edit: Edit, env: Any) -> None:
    """The edit inside an nnsight trace (runs in nnsight's worker, on real tensors)."""
    if edit.key == "zero positions":
        env.output = torch.zeros_like(env.output)
    elif edit.key == "zero rotary":
        cos, sin = env.output
        env.output = (torch.full_like(cos, float(env._module.attention_scaling)), torch.zeros_like(sin))
    else:
        args, kwargs = env.inputs
        if len(args) > 1:
            env.inputs = ((args[0], args[1] + edit.k, *args[2:]), kwargs)
        else:
            env.inputs = (args, {**kwargs, "position_ids": kwargs["position_ids"] + edit.k})


def with_nnsight(edit: Edit, hf: Any, tok: Any, causal: bool) -> Way:
    nnsight = peer("nnsight")
    if nnsight is None:
        return Way("nnsight", why=missing_note("nnsight"))
    from nnsight.modeling.transformers import TransformersModel

    nm = TransformersModel(hf, tokenizer=tok, task="text-generation") if causal else nnsight.NNsight(hf)
    env = submodule(nm, edit.path)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        with nm.trace(ids):
            _nnsight_edit(edit, env)
            out = nm.output.save()
        return out.logits

    def generate(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        with nm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                         output_logits=True, return_dict_in_generate=True) as tracer:
            for _ in tracer.iter[:n]:  # every forward of the decode loop (n of them)
                _nnsight_edit(edit, env)
            res = tracer.result.save()
        return res.sequences, torch.stack(res.logits)

    return Way("nnsight", forward, generate if causal else None)


# ---- pyvene ----

PYVENE_TUPLE = ("pyvene's ZeroIntervention on model.rotary_emb.output (a (cos, sin) tuple) zeroes only its first "
                "element: cos = 0 and sin kept, which is not 'no rotation' (cos = 1, sin = 0)")
PYVENE_SHIFT = ("cannot be expressed: pyvene intervenes on a module's output (of the rotary module: cos only, see "
                "zero rotary) or its first input (the hidden states), never on position_ids (its second input)")


def with_pyvene(edit: Edit, hf: Any, causal: bool) -> Way:
    if edit.key == "shift":
        return Way("pyvene", why=PYVENE_SHIFT)
    pv = peer("pyvene")
    if pv is None:
        return Way("pyvene", why=missing_note("pyvene"))
    # note: every pyvene call removes *all* forward (pre-)hooks of the wrapped model's modules
    # (pyvene.models.modeling_utils.remove_forward_hooks), so it gets an HF instance of its own
    cfg = pv.IntervenableConfig(representations=[{"component": f"{edit.path}.output", "intervention": pv.ZeroIntervention()}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = pv.IntervenableModel(cfg, hf)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        return pm(base={"input_ids": ids})[1].logits

    def generate(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # intervene_on_prompt=True: by default pyvene's generate edits the generated tokens only and
        # leaves the prompt's positions as they were (max |delta logits| 0.44 on tiny-gpt2)
        out = pm.generate(base={"input_ids": ids, "attention_mask": torch.ones_like(ids)}, intervene_on_prompt=True,
                          max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True)[1]
        return out.sequences, torch.stack(out.logits)

    return Way("pyvene", forward, generate if causal else None, wrong=PYVENE_TUPLE if edit.key == "zero rotary" else "")


# ---- pe-hooks ----

def pe_hooks_hooks(edit: Edit, model: Any) -> Any:
    import pe_hooks as p

    return p.replace(model, p.shift(edit.k)) if edit.key == "shift" else p.zero(model)


def bridge_forward(model: Any) -> Forward:
    return lambda ids: model(ids)


def bridge_generate(model: Any) -> Generate:
    def run(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = model.generate(ids, max_new_tokens=n, do_sample=False, stop_at_eos=False, verbose=False, output_logits=True)
        return out.sequences, torch.stack(list(out.logits))
    return run


def with_pe_hooks(edit: Edit, model: Any, causal: bool) -> Way:
    hooks = pe_hooks_hooks(edit, model)
    fwd, gen = bridge_forward(model), bridge_generate(model)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        with hooks.applied(model):
            return fwd(ids)

    def generate(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        with hooks.applied(model):
            return gen(ids, n)

    return Way("pe-hooks (bridge)", forward, generate if causal else None)
