"""`kenshin demo` on a ward of another world: the generator's parameters moved.

Our synthetic ward is a test bench, not the world. This generates the demo's ward inside
`data.synth.worlds.other_world(--world)` (habit effects, loadings, persistence, measurement
noise and glucose panels moved, seeded), runs the whole `kenshin demo` on it, and prints the
issue-12 figures of its training run: AUC-to-oracle, diabetes per glucose pattern, and the
what-if against the truth.

    .venv/bin/python bench/other_world.py --workdir /tmp/pw --residents 10000 --world 1
"""

from __future__ import annotations

import argparse
from pathlib import Path


def summary(workdir: Path) -> None:
    """The issue-12 figures of the work folder's latest training run."""
    from mlflow import MlflowClient

    from models.compare import run_table, training_runs
    from models.registry import tracking_uri

    client = MlflowClient(tracking_uri(workdir))
    run_id = training_runs(client)["run_id"].iloc[0]
    syn = run_table(run_id, "synthetic", client).set_index("outcome")
    print("\nAUC-to-oracle:", ", ".join(f"{o} {r:.3f}" for o, r in syn["auc_ratio"].items()))
    pat = run_table(run_id, "missingness_patterns", client)
    d = pat[(pat.outcome == "diabetes") & (pat.evaluation == "masked")].set_index("pattern")
    print("diabetes, test year masked (AUC, AUC drop, predicted / observed, predicted / true):")
    for p, r in d.iterrows():
        print(
            f"  {p:<11} {r.auc:.3f}  {r.auc_drop:+.3f}  {r.mean_p_over_observed:.2f}  "
            f"{r.mean_p_over_p_true:.2f}"
        )
    nat = pat[(pat.outcome == "diabetes") & (pat.evaluation == "natural") & (pat.n > 0)]
    true = (nat.n * nat.mean_p / nat.mean_p_over_p_true).sum()
    print(
        f"  every test resident, each under their own pattern: predicted / true "
        f"{(nat.n * nat.mean_p).sum() / true:.2f}"
    )
    w = run_table(run_id, "whatif_truth", client)
    w = w[w.n_offered >= 30]
    judged = w.dropna(subset=["sign_agreement", "mae_ratio_binned"])
    sign = (judged.sign_agreement >= 0.95).sum()
    size = (judged.mae_ratio_binned <= 0.30).sum()
    ratio = (w.mean_model_change / w.mean_true_change).median()
    print(
        f"what-if (cells offered to ≥ 30): sign ≥ 0.95 in {sign} of {len(judged)} "
        f"(min {judged.sign_agreement.min():.3f}); binned error ≤ 0.30 in {size}; "
        f"median binned error {judged.mae_ratio_binned.median():.2f}; "
        f"model / true mean change {ratio:.2f} (median); largest true rise share "
        f"{w.true_rise_share.max():.3f}"
    )
    low = judged[judged.sign_agreement < 0.95]
    if len(low):
        print("sign below 0.95:")
        print(low[["scenario", "outcome", "n_offered", "sign_agreement"]].to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--residents", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0, help="the ward's seed (who lives there)")
    ap.add_argument("--world", type=int, default=1, help="the parameters' seed")
    args = ap.parse_args()
    from data.synth.worlds import other_world
    from kenshin.cli import demo

    with other_world(args.world) as world:
        print(world)
        demo(residents=args.residents, workdir=args.workdir, seed=args.seed, demo_letters=200)
    summary(args.workdir)


if __name__ == "__main__":
    main()
