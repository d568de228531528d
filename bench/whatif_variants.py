"""Print the size target per lab-response variant on one synthetic ward (markdown, for README).

The lab response is refitted from the ward's store as each variant says
(:func:`models.lab_response.fit_response_tables`), the engine's pooled what-if is refitted from
it (:func:`scoring.whatif_effect.fit_training_effects`) and judged against the ward's true
counterfactual (:func:`scoring.whatif_truth.whatif_truth_report`), with the same trained
models throughout. Variants: a lever's steps kept on their own t only or also as a whole
(``lever_test``), drinking in amount steps or in g/day (``drinking``), and labs from pairs of
yearly checkups or within person over every checkup (``labs``), and the habit coefficients
kept by their t or all shrunk by one empirical-Bayes prior (``selection``). Per variant, the
cells offered to ≥ 30 residents meeting the target (binned error ≤ 0.30) and their median
error; then each cell's model / true mean change::

    .venv/bin/python bench/whatif_variants.py --workdir W --store W/store --truth W/bundle/truth.csv
"""

from __future__ import annotations

import copy

import pandas as pd
from wards import trained_ward

from models.lab_response import fit_response_tables
from scoring.whatif_effect import fit_training_effects
from scoring.whatif_truth import TARGETS, whatif_truth_report

VARIANTS = {
    "steps, step t, pairs": {"lever_test": False, "drinking": "steps", "labs": "differences"},
    "steps, lever t, pairs": {"lever_test": True, "drinking": "steps", "labs": "differences"},
    "g/day, step t, pairs": {"lever_test": False, "drinking": "grams", "labs": "differences"},
    "g/day, lever t, pairs": {"lever_test": True, "drinking": "grams", "labs": "differences"},
    "g/day, lever t, within (shipped)": {"lever_test": True, "drinking": "grams", "labs": "within"},
    "g/day, shrinkage, within": {"drinking": "grams", "labs": "within", "selection": "shrinkage"},
}


def main() -> None:
    ward = trained_ward(__doc__)
    engine, config, checkups, labels = ward.engine, ward.config, ward.checkups, ward.labels
    ratios, lines = {}, []
    for name, options in VARIANTS.items():
        e = copy.copy(engine)
        e.lab_response, e.lab_scale = fit_response_tables(checkups, engine.test_year, **options)
        e.whatif_effect = fit_training_effects(
            e, checkups, labels, engine.test_year - 1, config.tables.features
        )
        report = whatif_truth_report(e, checkups, labels, ward.truth, engine.test_year,
                                     config.model, config.tables.features)  # fmt: skip
        t = report[0].table
        t = t[t["n_offered"] >= 30].set_index(["scenario", "outcome"])
        meets = int((t["mae_ratio_binned"] <= TARGETS["mae_ratio_binned"]).sum())
        median = t["mae_ratio_binned"].median()
        lines.append(f"| {name} | {meets} of {len(t)} | {median:.3f} |")
        ratios[name] = t["mean_model_change"] / t["mean_true_change"]
    print(f"{ward.workdir}: test year {engine.test_year}")
    print("| variant | cells meeting the size target | median binned error |")
    print("|---|---|---|")
    print("\n".join(lines))
    print()
    table = pd.DataFrame(ratios)
    print("| scenario | outcome | " + " | ".join(table.columns) + " |")
    print("|" + "---|" * (len(table.columns) + 2))
    for (scenario, outcome), r in table.iterrows():
        print(f"| {scenario} | {outcome} | " + " | ".join(f"{v:.2f}" for v in r) + " |")


if __name__ == "__main__":
    main()
