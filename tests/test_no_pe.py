"""Issue 25: architectures with no positional encoding (RWKV, Mamba, Mamba-2, FalconMamba, Jamba, Zamba2:
recurrent or state-space mixers; Jamba's and Zamba2's attention layers without positions).

``inspect`` says so (a data refusal in ``sites.registry.REFUSALS``: no positional hook exists); every
positional verb raises that message, which names what still works; and what it names does work:
residual-stream ``project_out``, ``fit_eraser`` at ``site='resid_pre'`` and the position probes
(``sweep``), so a user can measure how much position such a model builds by itself.
"""

from __future__ import annotations

import pytest
import torch

import pe_hooks as p
from pe_hooks.cli.arch_check import build_pair

NAMES = ["RwkvForCausalLM", "MambaForCausalLM", "Mamba2ForCausalLM", "FalconMambaForCausalLM", "JambaForCausalLM",
         "Zamba2ForCausalLM"]
WHY = r"cannot edit the positions of architecture '{}'.*no positional encoding.*nothing to zero.*erasers and probes.*still work"
IDS = torch.tensor([[1, 40, 52, 61, 77, 90, 33, 12]])


@pytest.mark.parametrize("name", NAMES)
def test_no_pe_is_said_and_verbs_refuse_by_name(name: str) -> None:
    g, _ = build_pair(name)
    why = WHY.format(name)
    s = p.inspect(g)
    assert s.scheme is p.Scheme.NONE and "no positional encoding" in s.refused and "REFUSED" in str(s), str(s)
    for verb in (p.zero, p.remove, lambda m: p.replace(m, p.shift(2)), lambda m: p.project_out(m, k=2),
                 lambda m: p.zero(m, site="pos_embed")):
        with pytest.raises(p.SchemeError, match=why):
            verb(g)
    with torch.no_grad():
        base = g(IDS)  # type: ignore[operator]
        with p.project_out(g, torch.randn(2, int(g.cfg.d_model)), site="resid_pre", layers=[1]).applied(g):
            assert float((g(IDS) - base).abs().max()) > 1e-4  # type: ignore[operator]


def test_erasers_and_probes_run_on_mamba() -> None:
    g, _ = build_pair("MambaForCausalLM")
    data = torch.randint(3, 250, (12, 16), generator=torch.Generator().manual_seed(0))
    eraser = p.fit_eraser(g, data, method="leace", layers=[1, 2], seq_len=16, n_seqs=12, progress=False)
    with torch.no_grad():
        base = g(IDS)  # type: ignore[operator]
        with eraser.hooks(g).applied(g):
            erased = g(IDS)  # type: ignore[operator]
    assert torch.isfinite(erased).all() and float((erased - base).abs().max()) > 1e-5
    res = p.sweep(g, None, ["baseline", "erase-mean"], layers=[0, 2, 4], seq_len=32, n_seqs=24, n_fit=24,
                  nonlinear=(), progress=False)
    acc = res.pivot("acc")
    assert acc.shape == (3, 2) and bool(acc.notna().all().all()), acc
