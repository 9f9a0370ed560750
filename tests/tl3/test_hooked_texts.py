"""Trajectories of given texts on a TL 3.x HookedTransformer: the same latents as its own forward
at the content positions, and ``zero`` changes them."""

from __future__ import annotations

import numpy as np

from pe_hooks.branching import text_latents
from pe_hooks.branching.run import intervention_hooks
from tests.tl3.conftest import get_hooked

TEXTS = {"a": ["the cat sat on the mat today", "a dog ran far away in the park"],
         "b": ["hello world, how are you", "one two three four five six"]}


def test_texts_on_a_hooked_transformer() -> None:
    model = get_hooked("tiny-gpt2")
    lat = text_latents(model, TEXTS, layers=[0, 1], progress=False)
    n = len(lat.branch) // 4
    assert lat.sequences is not None and int(lat.sequences[0, 0]) == model.tokenizer.bos_token_id
    np.testing.assert_array_equal(lat.position, np.tile(np.arange(1, n + 1), 4))
    flat = [t for g in TEXTS.values() for t in g]
    for i, text in enumerate(flat):
        _, cache = model.run_with_cache(model.to_tokens(text)[:, :n + 1])  # the model reads it as it reads any text
        for layer in (0, 1):
            want = cache[f"blocks.{layer}.hook_resid_pre"][0, 1:].numpy()
            np.testing.assert_allclose(lat.latents[layer][lat.branch == i], want, rtol=0, atol=1e-5)
    zeroed = text_latents(model, TEXTS, layers=[0], max_tokens=n, hooks=intervention_hooks(model, "zero", n + 1),
                          progress=False)
    assert np.abs(zeroed.latents[0] - lat.latents[0]).max() > 1e-3
