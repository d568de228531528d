"""Print how close the synthetic ward is to the NDB FY2021 targets (markdown, for README/notes).

.venv/bin/python bench/calibration_table.py [--residents 100000] [--years 6]
"""

from __future__ import annotations

import argparse

from data.synth import SynthConfig, generate
from data.synth_calibration import calibration_report, incidence_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=6)
    args = parser.parse_args()
    bundle = generate(SynthConfig(residents=args.residents, years=args.years, seed=0))
    rep = calibration_report(bundle)
    print(f"{len(bundle.checkups):,} checkups; {len(rep)} sex × age-band cells\n")
    rep["worst"] = rep["diff"].abs()
    means = rep["kind"] == "mean"
    rep.loc[means, "worst"] = (rep["diff"] / rep["target"]).abs()[means] * 100
    rep.loc[~means, "worst"] = rep["worst"][~means] * 100
    summary = rep.groupby(["kind", "item"], sort=False).agg(
        cells=("worst", "size"), mean_abs=("worst", "mean"), worst=("worst", "max")
    )
    print("means: |synthetic/target - 1| in %; prevalences: |synthetic - target| in points")
    print(summary.round(2).to_string())
    print()
    print(incidence_report(bundle).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
