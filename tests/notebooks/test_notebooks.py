"""The analysts' notebooks run top to bottom on a small ward, so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SMALL = {"01_explore_cohort": "RESIDENTS = 1_500\nYEARS = 4\nSEED = 1"}


def test_committed_notebooks_have_no_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_executes(name, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert params, "notebook needs a cell tagged 'parameters'"
    params[0].source = SMALL[name]
    monkeypatch.chdir(tmp_path)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # The calibration table really came out (not an empty frame).
    html = "".join(str(o.get("data", {})) for c in nb.cells for o in c.get("outputs", []))
    assert "target" in html and "synthetic" in html and "share meeting outcome" in html
