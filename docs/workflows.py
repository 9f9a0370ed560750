"""Three short, real workflows (the README's). Run: ``python docs/workflows.py [MODEL]``.

Default model: smollm2-135m (offline, real weights, rotary positions).
"""

from __future__ import annotations

import sys

import torch

import pe_hooks as p

name = sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m"
model = p.load_model(name)
print(p.inspect(model).summary().splitlines()[1])  # scheme

# 1. One verb in run_with_hooks: how much does the model rely on rotary positions?
tokens = model.to_tokens("The capital of France is Paris. The capital of Italy is")
with torch.no_grad():
    base = model(tokens, return_type="loss")
    no_pos = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=p.zero(model))
print(f"1. loss {float(base):.3f} -> {float(no_pos):.3f} with zero(model)")

# 2. Two verbs composed in a `with` block, together with run_with_cache
hooks = p.remove(model, layers=[0, 1]) + p.zero(model, layers=[2])
print("2.", hooks)
with hooks.applied(model), torch.no_grad():
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_pre"))
print(f"   cached {len(cache)} residual sites, shape {tuple(cache['blocks.3.hook_resid_pre'].shape)}")

# 3. Generation with an intervention (KV cache: each new token gets its own shifted position)
with p.replace(model, p.shift(1000)).applied(model):
    text = model.generate("The capital of France is", max_new_tokens=8, do_sample=False, verbose=False)
print("3.", repr(text))
