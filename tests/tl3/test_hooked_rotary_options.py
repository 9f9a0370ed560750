"""TL 3.x ``HookedTransformer`` rotary options (issue 24) vs the model's own tables edited by hand.

Four tiny random-init models built from a ``HookedTransformerConfig`` (no hub, no HF model): partial
rotary (``rotary_dim`` 8 of ``d_head`` 16, Llama-like with 4 query heads sharing 2 key heads),
adjacent pairs (``rotary_adjacent_pairs``, GPT-J style: parallel attention + MLP, partial), a local
rotary base (``rotary_base_local`` on the ``local`` layers of ``attn_types``, Gemma-2/3 style:
global base 1e6, local 1e4, window 4) and Llama-3.1 NTK-by-parts (``use_NTK_by_parts_rope``, factor
8, original context 64: one band kept, two smoothed, five divided by 8), and YaRN (``use_yarn_rope``,
factor 4, tables scaled by an attention factor 1.2, so no rotation is cos = 1.2).

The independent reference is a copy of the same model whose attention modules' ``rotary_cos`` /
``rotary_sin`` buffers (``[positions, rotary_dim]``, what TL 3 indexes by position) are edited by
hand: ``zero`` = every row set to row 0 (no rotation: cos = the attention scaling, sin 0);
``bands`` = the same on the chosen bands' columns only
(``i`` and ``i + r/2``, or ``2i`` and ``2i+1`` with adjacent pairs); ``remove`` = every row set to
the mean of rows ``0..n-1``; ``replace(reverse(n))`` = rows ``0..n-1`` flipped; ``replace(shift(3))``
= rows ``3..n+2`` moved to ``0..n-1``. pe-hooks edits at ``attn.hook_rot_q/k`` (site ``rot_qk``, the
only rotary site on TL 3) from the frequencies it reads off the model. Tolerance 1e-5 on logits.
Every edit except ``shift`` moves the reference's logits by >= 1e-3 (measured and asserted; a shift
changes nothing in exact arithmetic, RoPE being relative: that check fails on wrong frequencies,
e.g. the global base used on a local layer, as pe-hooks did before reading each layer's own).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

import pe_hooks as p
from pe_hooks.sites import rotary_frequencies
from pe_hooks.sites.registry import RotaryLayout

TOL = 1e-5
MIN_EFFECT = 1e-3
IDS = torch.tensor([[5, 40, 52, 61, 77, 83, 90, 101, 7, 9, 30, 44], [6, 41, 50, 60, 70, 80, 91, 100, 8, 3, 31, 45]])
N = IDS.shape[1]

_BASE: dict[str, Any] = dict(
    n_layers=4, d_model=64, d_head=16, n_heads=4, d_mlp=128, d_vocab=320, n_ctx=256, act_fn="silu",
    normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True, n_key_value_heads=2,
    dtype=torch.float32, default_prepend_bos=False,
)
#: name -> (config fields over _BASE, the layout inspect must report, rotary width)
CASES: dict[str, tuple[dict[str, Any], RotaryLayout, int]] = {
    "partial": ({"rotary_dim": 8}, RotaryLayout.HALF, 8),
    "adjacent": ({"rotary_dim": 8, "rotary_adjacent_pairs": True, "parallel_attn_mlp": True, "act_fn": "gelu_new",
                  "normalization_type": "LN", "gated_mlp": False, "n_key_value_heads": None}, RotaryLayout.ADJACENT, 8),
    "local_base": ({"rotary_base": 1_000_000, "rotary_base_local": 10_000, "use_local_attn": True, "window_size": 4,
                    "attn_types": ["local", "global", "local", "global"]}, RotaryLayout.HALF, 16),
    "ntk_by_parts": ({"use_NTK_by_parts_rope": True, "NTK_by_parts_factor": 8.0, "NTK_by_parts_low_freq_factor": 1.0,
                      "NTK_by_parts_high_freq_factor": 4.0, "NTK_original_ctx_len": 64}, RotaryLayout.HALF, 16),
    "yarn": ({"use_yarn_rope": True, "yarn_factor": 4.0, "yarn_attention_factor": 1.2,
              "yarn_original_max_position_embeddings": 64}, RotaryLayout.HALF, 16),
}
#: each case's rope_type as pe-hooks must name it, and the attention scaling of its tables
ROPE: dict[str, tuple[str, float]] = {"ntk_by_parts": ("llama3", 1.0), "yarn": ("yarn", 1.2)}
_models: dict[str, Any] = {}


def build(name: str) -> Any:
    """The seeded random-init HookedTransformer of case ``name`` (built once)."""
    if name not in _models:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig(**{**_BASE, **CASES[name][0]})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = HookedTransformer(cfg, move_to_device=False)
            for n, w in model.named_parameters():  # TL's init leaves biases 0 and LN weights 1: give them values
                if w.ndim == 1 or n.endswith(("b_Q", "b_K")):
                    w.data.add_(0.1 * torch.randn_like(w))
        _models[name] = model.eval()
    return _models[name]


def _logits(model: Any, hooks: Any = ()) -> torch.Tensor:
    with torch.no_grad(), p.apply_hooks(model, list(hooks)):
        return model(IDS)  # type: ignore[no-any-return]


def _tables_edited(model: Any, edit: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A copy of ``model`` whose every attention module's ``rotary_cos``/``rotary_sin`` are
    ``edit(cos, sin, layer)``."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for i, block in enumerate(ref.blocks):
            cos, sin = edit(block.attn.rotary_cos.clone(), block.attn.rotary_sin.clone(), i)
            block.attn.rotary_cos.copy_(cos)
            block.attn.rotary_sin.copy_(sin)
    return ref


def _band_columns(name: str, bands: list[int], width: int) -> list[int]:
    if CASES[name][1] is RotaryLayout.ADJACENT:
        return [c for b in bands for c in (2 * b, 2 * b + 1)]
    return [c for b in bands for c in (b, b + width // 2)]


def _rows(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]:
    def edit(cos: torch.Tensor, sin: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, s = cos.clone(), sin.clone()
        c[:N], s[:N] = f(cos), f(sin)
        return c, s

    return edit


def _no_rotation(cos: torch.Tensor, sin: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    return cos[:1].expand_as(cos).clone(), sin[:1].expand_as(sin).clone()  # row 0: the scaling, and 0


def _mean(cos: torch.Tensor, sin: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    return cos[:N].mean(0).expand_as(cos).clone(), sin[:N].mean(0).expand_as(sin).clone()


def _verbs(name: str, model: Any) -> dict[str, tuple[Any, Callable[..., tuple[torch.Tensor, torch.Tensor]]]]:
    width = CASES[name][2]
    bands = p.frequency_bands(model, "high", width // 4)  # the highest quarter of the bands

    def band_edit(cos: torch.Tensor, sin: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        cols = _band_columns(name, [int(b) for b in bands], width)
        c, s = cos.clone(), sin.clone()
        c[:, cols], s[:, cols] = cos[:1, cols], sin[:1, cols]
        return c, s

    return {
        "zero": (p.zero(model), _no_rotation),
        "bands": (p.zero(model, bands=bands), band_edit),
        "remove": (p.remove(model), _mean),
        "reverse": (p.replace(model, p.reverse(N)), _rows(lambda t: t[:N].flip(0))),
        "shift": (p.replace(model, p.shift(3)), _rows(lambda t: t[3 : N + 3])),
    }


@pytest.mark.parametrize("name", list(CASES))
def test_inspect_reads_each_option(name: str) -> None:
    """The layout, width and per-layer bases pe-hooks reports are the model's."""
    model = build(name)
    s = p.inspect(model)
    _, layout, width = CASES[name]
    assert (s.rotary_layout, s.rotary_dim, s.rotary_layers, s.rot_q is not None) == (layout, width, (0, 1, 2, 3), True), str(s)
    if name == "local_base":
        assert s.rotary_base == (1e4, 1e6, 1e4, 1e6)
    rope_type, scaling_want = ROPE.get(name, ("default", 1.0))
    assert s.rope_type == rope_type
    for layer, block in enumerate(model.blocks):  # the frequencies read are the angles of the model's own table row 1
        inv, scaling = rotary_frequencies(model, layer)
        cos, sin = block.attn.rotary_cos[1].double(), block.attn.rotary_sin[1].double()
        cols = _band_columns(name, list(range(width // 2)), width)[:: 2]
        assert torch.allclose(inv.double(), torch.atan2(sin[cols], cos[cols]), rtol=1e-6, atol=0)
        assert scaling == pytest.approx(scaling_want, rel=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_rotary_verbs_vs_tables_edited(name: str) -> None:
    model = build(name)
    base = _logits(model)
    scale = float(base.abs().max())
    diffs, effects, wants = {}, {}, {}
    for verb, (hooks, edit) in _verbs(name, model).items():
        wants[verb] = _logits(_tables_edited(model, edit))
        diffs[verb] = float((_logits(model, hooks) - wants[verb]).abs().max())
        effects[verb] = float((wants[verb] - base).abs().max()) / scale
    assert all(d <= TOL for d in diffs.values()), {v: f"{d:.2g}" for v, d in diffs.items()}
    assert all(e >= MIN_EFFECT for v, e in effects.items() if v != "shift"), effects
    assert float((wants["bands"] - wants["zero"]).abs().max()) / scale >= MIN_EFFECT  # the other bands still rotate
    assert effects["shift"] <= 1e-5, effects  # RoPE is relative: the shifted reference is the model itself


def test_dynamic_ntk_is_refused_by_name() -> None:
    """TL 3's dynamic NTK (``use_dynamic_ntk_rope``, Qwen-1) rebuilds the tables on a wider base once
    the keys outgrow the training length: refused like the bridge's dynamic rope_type, with the
    reason and what still works (a residual eraser runs)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HookedTransformer(HookedTransformerConfig(**{**_BASE, "use_dynamic_ntk_rope": True, "train_seq_length": 16}),
                                  move_to_device=False).eval()
    s = p.inspect(model)
    assert "changes inv_freq with the sequence length" in s.refused and "erasers and probes" in s.refused, str(s)
    with pytest.raises(p.SchemeError, match="changes inv_freq with the sequence length"):
        p.zero(model)
    eraser = p.fit_eraser(model, IDS.repeat(3, 1), method="mean", layers=[1], seq_len=N, n_seqs=6, progress=False)
    with torch.no_grad(), eraser.hooks(model).applied(model):
        assert torch.isfinite(model(IDS)).all()


def test_not_a_rotation_names_no_missing_site_on_tl3() -> None:
    """When hook_rot_q is not the rotation of what pe-hooks saw at hook_q (here another hook edits
    hook_q after pe-hooks' own), the error names what still works on TL 3, not a cos/sin site it lacks."""
    model = build("partial")

    def noise(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x + torch.randn_like(x)

    hooks = list(p.zero(model)) + [("blocks.0.attn.hook_q", noise)]
    with pytest.raises(p.DataError, match=r"not a rotation.*no cos/sin tables to edit instead.*erasers") as err:
        _logits(model, hooks)
    assert "site='rotary'" not in str(err.value)
    assert all(not h._forward_hooks for h in model.hook_dict.values())  # nothing left attached
