"""The ALiBi bias as it sits inside ``attn.hook_attn_scores``, measured on the model itself.

ALiBi models add ``m_h * t_k`` (plus a per-row constant) to the scores of head ``h``; the slopes
``m_h`` and the scale they reach the scores hook with differ by architecture and by how
TransformerLens implements it: BLOOM's bridge holds ``m_h * t_k`` with Press et al.'s slopes, MPT's
``m_h * (t_k - (n - 1))`` (the same slopes here, another constant), TL's Falcon with ``alibi=True``
half of BLOOM's slopes. No formula is assumed: ``alibi_facts(model)`` zeroes the queries of layer 0
(``hook_q``), so that its scores hold the bias and the mask alone, and reads each head's slope
from them (and checks the bias is linear in the key position on every row). The model is left as
it was (no hook stays, gradients off, mode restored).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from pe_hooks.core.types import Model


@dataclass(frozen=True)
class AlibiFacts:
    """The bias inside layer 0's scores with the queries zeroed.

    Attributes:
        slopes: each head's slope per key position, as the scores hook holds it.
        linear: on every query row the bias is ``slope * t_k`` plus a constant.
        error: why it could not be measured (then nothing else is known).
    """

    slopes: tuple[float, ...] = ()
    linear: bool = False
    error: str | None = None


_CACHE: weakref.WeakKeyDictionary[Any, AlibiFacts] = weakref.WeakKeyDictionary()
Q_HOOK, SCORES = "blocks.0.attn.hook_q", "blocks.0.attn.hook_attn_scores"


def _from_scores(s: torch.Tensor) -> AlibiFacts:
    s = s[0].double()  # [heads, q, k]
    valid = s > torch.finfo(torch.float32).min / 2  # False on masked keys (a large negative or -inf)
    last = s[:, -1]  # every key valid on the last query row
    slopes = (last[:, 1:] - last[:, :-1]).mean(-1)  # [heads]
    k = torch.arange(s.shape[-1], dtype=torch.float64)
    fit = slopes[:, None, None] * k + s[..., :1]  # slope * t_k + the row's bias at key 0
    err = torch.where(valid, (s - fit).abs(), 0.0).amax()  # masked keys may hold -inf (HookedTransformer)
    linear = bool(err <= 1e-4 * max(1.0, float(s.masked_fill(~valid, 0).abs().max())))
    return AlibiFacts(slopes=tuple(float(x) for x in slopes), linear=linear)


def alibi_facts(model: Model) -> AlibiFacts:
    """``AlibiFacts`` of ``model`` (measured once per model; see the module doc)."""
    got = _CACHE.get(model)
    if got is not None:
        return got
    if Q_HOOK not in model.hook_dict or SCORES not in model.hook_dict:
        facts = AlibiFacts(error=f"{Q_HOOK} or {SCORES} does not exist")
    else:
        seen: list[torch.Tensor] = []

        def zero_q(x: torch.Tensor, hook: Any) -> torch.Tensor:
            return torch.zeros_like(x)

        def keep(x: torch.Tensor, hook: Any) -> None:
            seen.append(x.detach())

        training = bool(getattr(model, "training", False))
        ids = torch.tensor([[1, 40, 52, 61, 77, 90]]) % int(getattr(model.cfg, "d_vocab", 0) or 64)
        try:
            model.eval()
            with torch.no_grad():
                model.run_with_hooks(ids.to(next(iter(model.parameters())).device), fwd_hooks=[(Q_HOOK, zero_q), (SCORES, keep)])
            facts = _from_scores(seen[0].float()) if seen else AlibiFacts(error=f"{SCORES} did not fire")
        except Exception as exc:  # the model's own forward failed
            facts = AlibiFacts(error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            model.train(training)
    _CACHE[model] = facts
    return facts
