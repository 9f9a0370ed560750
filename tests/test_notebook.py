"""docs/notebook.ipynb runs in a real Jupyter kernel and shows the sweep and branches figures inline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"


def test_notebook_shows_the_sweep_figure_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # a kernel spec of this very interpreter (a user-level "python3" spec may point elsewhere)
    spec = tmp_path / "kernels" / "pe-hooks-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pe-hooks (test)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own default (inline), as in Jupyter
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="pe-hooks-test", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.output_type != "error" for c in code for o in c.outputs)
    plot_cell = next(c for c in code if "plot_sweep(result)" in c.source)
    images = [o for o in plot_cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, [o.get("data", {}).keys() for o in plot_cell.outputs]
    assert len(images[0]["data"]["image/png"]) > 10_000  # base64 of a real picture, not a blank canvas
    branches_cell = next(c for c in code if "plot_branches_run(run)" in c.source)  # pe_hooks.run_branches's figure
    images = [o for o in branches_cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, [o.get("data", {}).keys() for o in branches_cell.outputs]
    assert len(images[0]["data"]["image/png"]) > 10_000
