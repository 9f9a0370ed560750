"""The public API: what ``import pe_hooks`` offers, explicit signatures, and every "use X instead"
in an error message names something that exists and works."""

from __future__ import annotations

import importlib
import inspect as pyinspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import pe_hooks as p
from pe_hooks.data import load_data
from pe_hooks.interventions.verbs import SITES
from tests.conftest import get_model

PACKAGE = Path(p.__file__).parent
PUBLIC = (
    "inspect", "load_model", "zero", "remove", "replace", "project_out", "fit_eraser", "PositionEraser",
    "sweep", "branches", "HookList", "apply_hooks", "constant", "shift", "shuffle", "reverse", "scale", "table",
    "PeHooksError", "SchemeError", "DataError", "ModelLoadError", "Scheme", "PositionalScheme", "SweepResult",
    "DEFAULT_MODEL",
)


def test_the_public_api_is_at_the_top_level() -> None:
    for name in PUBLIC:
        assert hasattr(p, name), name
    assert set(PUBLIC) <= set(p.__all__)
    assert all(hasattr(p, name) for name in p.__all__)
    for helper in ("load_hf", "bridge_from_hf"):  # test helpers stay in pe_hooks.models
        assert not hasattr(p, helper) and hasattr(importlib.import_module("pe_hooks.models"), helper)


@pytest.mark.parametrize(("module", "internal"), [
    ("pe_hooks.erasers", "SiteMap"), ("pe_hooks.erasers", "METHODS"), ("pe_hooks.erasers", "onehot_bins"),
    ("pe_hooks.sites", "FAMILIES"),
])
def test_subpackages_do_not_export_internals(module: str, internal: str) -> None:
    mod = importlib.import_module(module)
    assert internal not in mod.__all__ and not hasattr(mod, internal)


@pytest.mark.parametrize("verb", [p.zero, p.remove, p.replace, p.project_out])
def test_verbs_have_explicit_documented_signatures(verb: Callable[..., Any]) -> None:
    params = pyinspect.signature(verb).parameters
    assert all(q.kind is not q.VAR_KEYWORD and q.kind is not q.VAR_POSITIONAL for q in params.values())
    doc = pyinspect.getdoc(verb) or ""
    for name in params:
        assert re.search(rf"^\s+{name}:", doc, re.M), f"{verb.__name__}: {name} is not documented"
    assert all(q.annotation is not q.empty for q in params.values())


def test_help_shows_every_rotary_option() -> None:
    import pydoc

    assert "bands" in pydoc.render_doc(p.zero)
    assert "reference" in pydoc.render_doc(p.remove)
    assert "keep_bands" in pydoc.render_doc(p.replace)


def _messages_in_source() -> str:
    return "\n".join(f.read_text() for f in PACKAGE.rglob("*.py"))


def _resolve(dotted: str) -> object:
    obj: object = p
    for part in dotted.split(".")[1:]:  # getattr, or import a submodule not imported yet
        name = f"{obj.__name__}.{part}" if hasattr(obj, "__name__") else part
        obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(name)
    return obj


def test_every_pe_hooks_call_named_in_the_source_exists() -> None:
    """Messages and docstrings say ``pe_hooks.fit_eraser(model, data)``, ``pe_hooks.inspect(model)``...:
    each of those names must resolve."""
    named = set(re.findall(r"\bpe_hooks((?:\.[A-Za-z_]\w*)+)\(", _messages_in_source()))
    assert "pe_hooks.fit_eraser" in {f"pe_hooks{n}" for n in named}
    for dotted in sorted(named):
        assert callable(_resolve(f"pe_hooks{dotted}")), dotted


def test_every_site_named_in_the_source_exists() -> None:
    named = set(re.findall(r"site='(\w+)'", _messages_in_source()))
    assert named and named <= set(SITES), named - set(SITES)


def _small_data(model: Any) -> Any:
    return load_data(model, None, seq_len=16, n_seqs=8)


def _fit_eraser(model: Any) -> Any:
    return p.fit_eraser(model, _small_data(model), layers=[0], progress=False)


# (bad call, what the message must suggest, the suggested call) -- each suggestion is run
SUGGESTIONS: list[tuple[str, Callable[[], Any], str, Callable[[], Any]]] = [
    ("pos_embed on rotary", lambda: p.zero(get_model("tiny-llama"), site="pos_embed"), "site='rotary'",
     lambda: p.zero(get_model("tiny-llama"), site="rotary")),
    ("pos_embed on alibi", lambda: p.zero(get_model("tiny-bloom"), site="pos_embed"), "site='alibi'",
     lambda: p.zero(get_model("tiny-bloom"), site="alibi")),
    ("rotary on learned", lambda: p.zero(get_model("tiny-gpt2"), site="rotary"), "site='pos_embed'",
     lambda: p.zero(get_model("tiny-gpt2"), site="pos_embed")),
    ("alibi on bert", lambda: p.zero(get_model("tiny-bert"), site="alibi"), "site='pos_embed'",
     lambda: p.zero(get_model("tiny-bert"), site="pos_embed")),
    ("rot_qk on neox", lambda: p.zero(get_model("tiny-neox"), site="rot_qk"), "site='rotary'",
     lambda: p.zero(get_model("tiny-neox"), site="rotary")),
    ("heads on rotary tables", lambda: p.zero(get_model("tiny-llama"), heads=[0, 1]), "site='rot_qk'",
     lambda: p.zero(get_model("tiny-llama"), site="rot_qk", heads=[0, 1])),
    ("zero at a residual site", lambda: p.zero(get_model("tiny-gpt2"), site="resid_pre"),
     "pe_hooks.fit_eraser(model, data)", lambda: _fit_eraser(get_model("tiny-gpt2"))),
    ("zero at a residual site (2)", lambda: p.zero(get_model("tiny-gpt2"), site="resid_pre"),
     "pe_hooks.project_out(model, basis, site='resid_pre')",
     lambda: p.project_out(get_model("tiny-gpt2"), torch.randn(2, 64), site="resid_pre")),
    ("project_out on rotary", lambda: p.project_out(get_model("tiny-llama"), torch.zeros(1, 64), site="rotary"),
     "pe_hooks.fit_eraser(model, data)", lambda: _fit_eraser(get_model("tiny-llama"))),
    ("project_out on alibi", lambda: p.project_out(get_model("tiny-bloom"), torch.zeros(1, 64), site="alibi"),
     "pe_hooks.fit_eraser(model, data)", lambda: _fit_eraser(get_model("tiny-bloom"))),
    ("residual without a basis", lambda: p.project_out(get_model("tiny-gpt2"), site="resid_pre"),
     "pe_hooks.fit_eraser(model, data)", lambda: p.project_out(get_model("tiny-gpt2"), _fit_eraser(get_model("tiny-gpt2")))),
    ("bands on alibi", lambda: p.zero(get_model("tiny-bloom"), bands=[0]), "site(s) 'rot_qk', 'rotary'",
     lambda: p.zero(get_model("tiny-llama"), site="rotary", bands=[0])),
    ("reference on alibi", lambda: p.remove(get_model("tiny-bloom"), reference=range(4)),
     "site(s) 'pos_embed', 'rot_qk', 'rotary'", lambda: p.remove(get_model("tiny-gpt2"), site="pos_embed", reference=range(4))),
    ("keep_bands on learned", lambda: p.replace(get_model("tiny-gpt2"), p.shift(1), keep_bands=[0]),
     "site(s) 'rot_qk', 'rotary'", lambda: p.replace(get_model("tiny-llama"), p.shift(1), site="rot_qk", keep_bands=[0])),
    ("integer eraser labels", lambda: p.fit_eraser(get_model("tiny-gpt2"), None, features="int"), "features='fourier'",
     lambda: p.fit_eraser(get_model("tiny-gpt2"), _small_data(get_model("tiny-gpt2")), features="fourier", layers=[0], progress=False)),
]


@pytest.mark.parametrize(("case", "bad", "suggestion", "fix"), SUGGESTIONS, ids=[s[0] for s in SUGGESTIONS])
def test_each_error_suggestion_works(case: str, bad: Callable[[], Any], suggestion: str, fix: Callable[[], Any]) -> None:
    with pytest.raises(p.PeHooksError) as info:
        bad()
    assert suggestion in str(info.value), str(info.value)
    for dotted in re.findall(r"\bpe_hooks((?:\.\w+)+)\(", suggestion):
        assert callable(_resolve(f"pe_hooks{dotted}"))
    out = fix()
    assert isinstance(out, p.PositionEraser) or (isinstance(out, p.HookList) and len(out) > 0)


def test_no_backend_switching_and_no_pyplot_in_the_package() -> None:
    src = _messages_in_source()
    assert not re.search(r"matplotlib\.use\(|^\s*(import matplotlib\.pyplot|from matplotlib(\.pyplot)? import pyplot|from matplotlib\.pyplot import)", src, re.M)
