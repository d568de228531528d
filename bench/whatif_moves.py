"""Print how far each what-if moves each item next year: the synthetic generator's truth against
the lab response a store's training years give (markdown, for README / notes).

A generator sample (``--persons`` people aged 40-70, three years of its own dynamics) is
observed at a checkup; each scenario's intervention (data.synth.whatif) and the baseline are
advanced one year with the same random draws and observed again with the same measurement
noise, so their difference is the scenario's true move of every reported item. The same
checkups, edited by the scenario as scoring.toml says, are moved by the store's lab response
(models.lab_response) in recorded units (as before normal scores) and on the normal score
(as the engine does). Mean moves over everyone the scenario applies to, and over the fifth
with the highest value of the item now (the residents near the cuts)::

    .venv/bin/python bench/whatif_moves.py --store WORKDIR/store [--test-year 2024]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from data.store import read_checkups
from data.synth import model, whatif
from data.synth.observe import observe
from models.lab_response import fit_lab_response, fit_response_tables, lab_shift
from scoring.score import apply_scenario, load_scoring_config

ITEMS = ("weight_kg", "waist_cm", "sbp", "hba1c", "fpg", "tg", "hdl", "ldl", "alt", "ggt",
         "uric_acid", "egfr")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--test-year", type=int, default=None,
                        help="fit on fiscal years before it (default: the store's last)")  # fmt: skip
    parser.add_argument("--persons", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    checkups = read_checkups(args.store)
    year = args.test_year or int(checkups["fiscal_year"].max())
    table_z, scales = fit_response_tables(checkups, year)
    table_v = fit_lab_response(checkups, year)

    cal = model.calibration()
    rng = np.random.default_rng(args.seed)
    n = args.persons
    sex = rng.integers(1, 3, n).astype(np.int8)
    age = rng.integers(40, 71, n)
    st = model.init_state(sex, age, rng, cal)
    for _ in range(3):
        age = age + 1
        st = model.step(st, age, rng, cal)
    birth_year = 2024 - age
    obs = observe(st, age, age, birth_year, np.random.default_rng(args.seed + 4), cal)
    frame = pd.DataFrame({k: np.asarray(v, dtype="float64") for k, v in obs.items()
                          if np.ndim(v) == 1 and len(v) == n})  # fmt: skip
    frame["sex"] = sex
    frame["pseudonym"] = [f"g{i:07d}" for i in range(n)]
    scenarios = {s.key: s for s in load_scoring_config().scenarios}

    def next_year(state: dict, rows: np.ndarray) -> dict:
        a = age[rows] + 1
        new = model.step(state, a, np.random.default_rng(args.seed + 77), cal)
        return observe(new, a, a, birth_year[rows], np.random.default_rng(args.seed + 78), cal)

    out = []
    for key, (rows, changed) in whatif.counterfactual_states(st, obs, age, cal).items():
        base = next_year({k: v[rows] for k, v in st.items() if not k.startswith("_")}, rows)
        cf = next_year(changed, rows)
        before = frame.iloc[rows].reset_index(drop=True)
        edited = apply_scenario(before, scenarios[key])
        flat = lab_shift(before, edited.copy(), table_v)
        score = lab_shift(before, edited.copy(), table_z, scales)
        for item in ITEMS:
            now = before[item].to_numpy("float64")
            true = np.asarray(cf[item], "float64") - np.asarray(base[item], "float64")
            top = now >= np.nanquantile(now, 0.8)
            moves = {
                "true": true,
                "recorded units": flat[item].to_numpy("float64") - now,
                "normal score": score[item].to_numpy("float64") - now,
            }
            row = {"scenario": key, "item": item, "n": len(rows)}
            for name, d in moves.items():
                row[name] = np.nanmean(d)
                row[f"{name}, top fifth"] = np.nanmean(d[top])
            out.append(row)
    result = pd.DataFrame(out)
    print(f"store {args.store}, fitted on fiscal years before {year}; generator sample {n:,}")
    cols = list(result.columns)
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in result.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in r]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
