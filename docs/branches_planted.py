"""What the phenomenon looks like when it is there: the branches figure of planted latents
(``pe_hooks.branching.planted_branches``: a shared positional drift hiding 8 branch offsets), raw vs
erased by a LEACE eraser fitted on another draw vs erased by erasers fitted on the branches
(cross-fitted). The same data as the planted tests.

    python docs/branches_planted.py     # ~30 s; writes docs/results/branches-planted/
"""

from __future__ import annotations

from pathlib import Path

from pe_hooks.branching import BranchLatents, analyze, make_views, planted_branches
from pe_hooks.core.atomic import write_artefact
from pe_hooks.erasers import fit_on_arrays
from pe_hooks.reports import headline_table
from pe_hooks.viz import plot_branches

OUT = Path(__file__).parent / "results" / "branches-planted"


def main() -> int:
    x, b, t = planted_branches(seed=1)
    ref_x, _, ref_t = planted_branches(seed=101)  # another draw: the "reference corpus"
    eraser = fit_on_arrays(ref_x, ref_t, method="leace", n_freqs=4, exempt_first=False)
    lat = BranchLatents.from_arrays(x, b, t)
    views = make_views(lat, 0, eraser=eraser, eraser_name="erased (leace, other draw)", crossfit=True)
    res = analyze(views, layer=0, progress=False)
    table = headline_table(res.rows)
    with write_artefact(OUT, "planted branches", 1, replaces=("branches-planted.png", "headline.md")) as tmp:
        plot_branches(res, tmp / "branches-planted.png",
                      title="planted: 8 branch offsets under a shared positional drift (40 positions, 64 dims)")
        (tmp / "headline.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
