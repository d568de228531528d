"""The analysts' notebooks run top to bottom on a small ward, so they never rot."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
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


def _execute(name: str, parameters: str, folder: Path, extra: str | None = None):
    """Run notebook ``name`` in ``folder`` with its 'parameters' cell replaced (and ``extra``
    appended as a last cell); fail on any error output. Returns the executed notebook."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert params, "notebook needs a cell tagged 'parameters'"
    params[0].source = parameters
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    return nb


def _outputs(nb) -> list:
    return [o for c in nb.cells for o in c.get("outputs", [])]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = _execute(name, SMALL[name], tmp_path)
    # The calibration table really came out (not an empty frame).
    html = "".join(str(o.get("data", {})) for o in _outputs(nb))
    assert "target" in html and "synthetic" in html and "share meeting outcome" in html


def _two_training_runs(tmp: Path) -> tuple[Path, Path]:
    """synth → ingest → train (seed 0) → promote → train again (seed 1): v1 champion, v2
    challenger in ``tmp/work``. Small and without value forecasts, to keep it quick."""
    from data.ingest import ingest
    from data.synth import SynthConfig, generate, write_bundle
    from kenshin.commands import run_train
    from models.config import ModelConfig
    from models.registry import promote

    bundle = generate(SynthConfig(residents=2_000, years=5, seed=21))
    write_bundle(bundle, tmp / "bundle", fmt="parquet")
    ingest(tmp / "bundle", tmp / "store")
    for seed in (0, 1):
        # min_events=0: LightGBM on every outcome of this small ward (no small-ward fallback)
        config = ModelConfig(forecasts=False, min_events=0).with_seed(seed)
        run_train(tmp / "store", tmp / "work", config=config)
        if seed == 0:
            assert promote(tmp / "work").promoted
    return tmp / "work", tmp / "store"


@pytest.mark.xdist_group("mlflow")
def test_compare_models_notebook(tmp_path, monkeypatch):
    """Notebook 02 compares the champion and the challenger of two real training runs."""
    from data.columns import OUTCOMES
    from features.declarations import get

    work, store = _two_training_runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = (
        f'WORKDIR = "{work}"\nSTORE = "{store}"\nMODELS = None\nTOP_FEATURES = 8\nITEM_ROWS = 300'
    )
    show = (
        'print("COMPARISON=" + comparison.to_json(orient="records"))\n'
        'print("ITEMS=" + item_strength.to_json(orient="records"))'
    )
    nb = _execute("02_compare_models", params, tmp_path, extra=show)
    text = [o["text"] for o in _outputs(nb) if o.output_type == "stream" and o.name == "stdout"]
    text = "".join(text).splitlines()
    line = next(t for t in text if t.startswith("COMPARISON="))
    comparison = json.loads(line.removeprefix("COMPARISON="))
    # One row per outcome per model, champion first.
    keys = [(r["model"], r["outcome"]) for r in comparison]
    assert sorted(keys) == sorted(
        (m, o) for m in ("v1 champion", "v2 challenger") for o in OUTCOMES
    )
    assert keys[0][0] == "v1 champion"
    for r in comparison:
        assert 0.5 < r["auc"] <= 1, r
        # the shared test rows are the runs' own test rows: recomputed AUC = logged AUC
        assert r["auc_same_rows"] == pytest.approx(r["auc"], abs=1e-9), r
        assert r["ece_same_rows"] == pytest.approx(r["ece"], abs=1e-9), r
        # The baseline is computed (its quality is tested in tests/models: on this small ward
        # an outcome with a few dozen test events can put a plain LR near or under 0.5).
        assert 0 <= r["ece"] < 0.5 and 0 < r["logistic_auc"] <= 1 and r["top_feature"]
    # The plots came out (AUC bars, reliability curves, AUC Δ by sex × age, SHAP bars, shap
    # beeswarms and dependence plots by clinical item), and the SHAP table carries the Japanese
    # labels of the top features.
    outputs = _outputs(nb)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6
    items = next(t for t in text if t.startswith("ITEMS="))
    strength = pd.DataFrame(json.loads(items.removeprefix("ITEMS=")))
    assert set(strength["outcome"]) == set(OUTCOMES)
    # one line per clinical item: HbA1c's change and slope are not items of their own
    assert "hba1c" in set(strength["item"]) and "hba1c_slope" not in set(strength["item"])
    top = strength.sort_values("mean_abs_shap").groupby("outcome").tail(1).set_index("outcome")
    assert top.loc["diabetes", "item"] in ("hba1c", "glucose"), top
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    for r in comparison:
        assert get(r["top_feature"]).ja in html
    assert "auc Δ" in html and "40-49" in html and "challenger" in html
