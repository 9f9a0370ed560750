"""TransformerLens 3.x ``HookedTransformer`` built offline from a local HF model.

TL 3.x (``transformer-lens<4``) cannot be installed beside TL 4.x; ``make test-tl3`` sets up a second
environment (``.venv-tl3``) for it. Weights are loaded *without* TL's processing (no LayerNorm
folding, no centring), so activations match the HF model to float precision and the same
hand-edited HF references can check interventions on both backends.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pe_hooks.core.errors import ModelLoadError


def hooked_available() -> bool:
    """True when TransformerLens 3.x (with ``HookedTransformer``) is importable."""
    try:
        from transformer_lens import HookedTransformer  # noqa: F401  (removed in TL 4.0)
    except ImportError:
        return False
    return True


def hooked_from_hf(
    hf_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Any:
    """Convert an in-memory HF model to a TL 3.x ``HookedTransformer`` (unprocessed weights), in
    ``dtype`` (default: the HF model's)."""
    if not hooked_available():
        raise ModelLoadError(
            "HookedTransformer needs TransformerLens 3.x: `pip install 'transformer-lens>=3.9,<4'` in a "
            "separate environment (`make test-tl3` builds one in .venv-tl3)"
        )
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import convert_hf_model_config, get_pretrained_state_dict

    dtype = dtype or hf_model.dtype
    config = hf_model.config
    if hasattr(config, "n_positions") and not hasattr(config, "n_ctx"):
        config.n_ctx = config.n_positions  # TL 3 reads n_ctx, which transformers 5 dropped
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        cfg_dict = convert_hf_model_config(folder)
        cfg_dict["original_architecture"] = type(hf_model).__name__
        cfg_dict["tokenizer_prepends_bos"] = False
        cfg_dict["dtype"] = dtype
        fields = HookedTransformerConfig.__dataclass_fields__
        cfg = HookedTransformerConfig(**{k: v for k, v in cfg_dict.items() if k in fields})
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        state = get_pretrained_state_dict(folder, cfg, hf_model=hf_model)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.to(device).to(dtype).eval()
