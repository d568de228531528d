"""Print where a synthetic ward's what-if error comes from (markdown, for README / notes).

Per scenario × outcome, the model's mean risk change over the residents the shipped what-if
is offered to (scoring.whatif_truth; the training run's test residents) divided by the true
mean change, for the what-if built up in steps, each re-scored per resident:

* ``answer`` — only the scenario's own edit (the answer; weight and waist for weight loss);
* ``+ body`` — weight and waist follow a habit (models.lab_response, body rows);
* ``+ labs`` — the labs follow too: the per-resident what-if;
* ``trees pooled`` — the per-resident what-if pooled into one odds ratio for every outcome;
* ``pooled`` — the engine's pooled odds ratio (what the annual run applies: through the value
  forecasts where every item of the outcome is forecast, scoring.whatif_liability), and its
  binned error against the 0.30 target.

A step's ratio is over the residents that step offers to, so the steps do not add up; they
show which edit carries the change. Needs a training run of ``kenshin train --truth`` (or
``kenshin demo``) on a synthetic store::

    .venv/bin/python bench/whatif_parts.py --workdir W --store W/store --truth W/bundle/truth.csv
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from wards import trained_ward

from models.lab_response import BODY
from scoring.score import load_scoring_config
from scoring.whatif_effect import fit_training_effects
from scoring.whatif_truth import whatif_truth_report


def main() -> None:
    ward = trained_ward(__doc__)
    engine, config, checkups, labels = ward.engine, ward.config, ward.checkups, ward.labels
    shipped = load_scoring_config()
    per_resident = shipped.model_copy(update={"scenario_effect": "per_resident"})
    table = engine.lab_response
    body_only = table.assign(coef=np.where(table["lab"].isin(BODY), table["coef"], 0.0))

    def run(label: str, lab_table: pd.DataFrame | None, scoring, forecasts=True) -> pd.DataFrame:
        e = copy.copy(engine)
        e.lab_response = lab_table
        if not forecasts:  # the engine's pooled what-if as if it had no value forecasts
            e.forecast_items = ()
            e.whatif_effect = fit_training_effects(
                e, checkups, labels, engine.test_year - 1, config.tables.features
            )
        report = whatif_truth_report(e, checkups, labels, ward.truth, engine.test_year,
                                     config.model, config.tables.features, scoring)  # fmt: skip
        t = report[0].table.set_index(["scenario", "outcome"])
        out = pd.DataFrame({label: t["mean_model_change"] / t["mean_true_change"]})
        if label == "pooled":
            out["binned error"] = t["mae_ratio_binned"]
            out["offered"] = t["n_offered"]
        return out

    parts = [
        run("answer", None, per_resident.model_copy(update={"scenario_lab_response": False})),
        run("+ body", body_only, per_resident),
        run("+ labs", table, per_resident),
        run("trees pooled", table, shipped, forecasts=False),
        run("pooled", table, shipped),
    ]
    result = pd.concat(parts, axis=1)
    result = result[result["offered"].fillna(0) >= 30]
    meets = int((result["binned error"] <= 0.30).sum())
    print(f"{ward.workdir}: test year {engine.test_year}; model / true mean change per step; "
          f"{meets} of {len(result)} cells meet binned error ≤ 0.30")  # fmt: skip
    cols = ["scenario", "outcome", *result.columns]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for (scenario, outcome), r in result.iterrows():
        cells = [f"{v:.2f}" if np.isfinite(v) else "—" for v in r.drop("offered")]
        print(f"| {scenario} | {outcome} | " + " | ".join(cells) + f" | {int(r['offered'])} |")


if __name__ == "__main__":
    main()
