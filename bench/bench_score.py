"""Annual scoring throughput and peak memory against the targets of bench/README.md.

    .venv/bin/python bench/bench_score.py [--residents 100000] [--train-residents 100000]
                                          [--workdir DIR] [--letters N]

1. (child process, skipped when ``--workdir`` already holds them) a training ward of
   ``--train-residents`` × 6 years → ingest → train → promote (``kenshin-risk@champion``), and,
   when ``--residents`` differs, a scoring ward of that size → ingest into its own store;
2. (child process) ``kenshin score`` for the last fiscal year: eligibility, risk, forecasts,
   every what-if scenario, selection, SHAP for every letter/control resident, drift; letters
   and report off unless ``--letters N`` (then N advice + N see-doctor letters and the report);
   without letters the budgets are ``--budget`` (default 1,000 each), so SHAP still runs for
   every resident a real run would letter.

Prints residents/s of the scoring step and the scoring child's peak RSS. Targets (2 cores):
100k residents ≤ 60 s with SHAP for every letter; 1M residents ≤ 4 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from wards import make_ward

FY = 2025


def _child(code: str, env: dict) -> float:
    """Run ``code`` in a fresh interpreter; return its peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024


def _replicate(src: Path, dst: Path, copies: int) -> None:
    """A store ``copies`` times larger: every resident repeated under new pseudonyms.

    Cheaper than generating millions of residents (the synthetic generator holds a whole ward in
    memory); residents are independent, so a replicated store scores like a large ward.
    """
    import hashlib
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from data.store import MANIFEST, fingerprint

    def renamed(table: pa.Table, k: int) -> pa.Table:
        old = table.column("pseudonym").to_pylist()
        uniq = {p: hashlib.sha256(f"{k}:{p}".encode()).hexdigest()[:16] for p in set(old)}
        col = pa.array([uniq[p] for p in old], type=table.schema.field("pseudonym").type)
        return table.set_column(table.schema.get_field_index("pseudonym"), "pseudonym", col)

    shutil.rmtree(dst, ignore_errors=True)
    for f in sorted(src.rglob("*.parquet")):
        rel = f.relative_to(src)
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        t = pq.read_table(f)
        if "pseudonym" not in t.column_names:
            shutil.copy(f, out)
            continue
        with pq.ParquetWriter(out, t.schema, compression="zstd") as w:
            for k in range(copies):
                w.write_table(t if k == 0 else renamed(t, k))
    manifest = json.loads((src / MANIFEST).read_text())
    manifest["store_fingerprint"] = fingerprint(dst)
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--train-residents", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kenshin-bench-score"))
    parser.add_argument("--letters", type=int, default=0)
    parser.add_argument(
        "--budget", type=int, default=1000,
        help="advice and see-doctor budgets when no letters are rendered (SHAP for all of them)",
    )  # fmt: skip
    parser.add_argument(
        "--replicate", type=int, default=1,
        help="score a store K times the scoring ward (residents repeated under new pseudonyms)",
    )  # fmt: skip
    args = parser.parse_args()
    work = args.workdir.resolve()
    env = {**os.environ, "KENSHIN_PSEUDONYM_KEY": "bench-key-0123456789"}
    env.pop("MLFLOW_TRACKING_URI", None)
    train = work / f"train_{args.train_residents}"
    if not (train / "work" / "mlflow.db").exists():
        t0 = time.perf_counter()
        make_ward(train, args.train_residents, env=env)
        _child(
            "from pathlib import Path; from kenshin.commands import run_train; "
            "from models.registry import promote; "
            f"run_train(Path({str(train / 'store')!r}), Path({str(train / 'work')!r})); "
            f"promote(Path({str(train / 'work')!r}))",
            env,
        )
        print(
            f"training ward {args.train_residents:,}: prepared in {time.perf_counter() - t0:.0f} s"
        )
    score_ward = train
    if args.residents != args.train_residents:
        score_ward = work / f"score_{args.residents}"
        if not (score_ward / "store" / "manifest.json").exists():
            t0 = time.perf_counter()
            peak = make_ward(score_ward, args.residents, seed=1, env=env)
            print(f"scoring ward {args.residents:,}: synth + ingest {time.perf_counter() - t0:.0f} s"
                  f" (peak {peak:,.0f} MB)")  # fmt: skip
    if args.replicate > 1:
        big = work / f"score_{args.residents}_x{args.replicate}"
        if not (big / "store" / "manifest.json").exists():
            t0 = time.perf_counter()
            _replicate(score_ward / "store", big / "store", args.replicate)
            print(f"replicated store ×{args.replicate}: {time.perf_counter() - t0:.0f} s")
        score_ward = big
    out = work / f"out_{args.residents}_x{args.replicate}"
    budget = args.letters or args.budget
    code = (
        "import json, resource; from pathlib import Path; "
        "from kenshin.annual import AnnualRunConfig, run_annual; "
        "from scoring.score import load_scoring_config; "
        "from scoring.selection import Budget, load_config; "
        f"sel = load_config().model_copy(update={{'budget': Budget(advice={budget}, "
        f"see_doctor={budget})}}); "
        f"cfg = AnnualRunConfig(store=Path({str(score_ward / 'store')!r}), fiscal_year={FY}, "
        f"out=Path({str(out)!r}), workdir=Path({str(train / 'work')!r}), "
        f"scoring=load_scoring_config(), selection=sel, letters={bool(args.letters)}, "
        f"report={bool(args.letters)}, log_mlflow=False); "
        "r = run_annual(cfg); "
        "print(json.dumps({'counts': r.counts, 'seconds': r.seconds, "
        "'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True
    )
    info = json.loads(res.stdout.strip().splitlines()[-1])
    c, s = info["counts"], info["seconds"]
    print(f"scored {c['scored']:,} residents (eligible of {c['with_checkup']:,} with a checkup); "
          f"{c['explained']:,} explained (letter + control arm)")  # fmt: skip
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()))
    print(f"scoring (risk + forecasts + {7} what-if scenarios): {c['scored'] / s['score']:,.0f} "
          f"residents/s; score + select + explain: {s['score'] + s['select'] + s['explain']:.1f} s")  # fmt: skip
    print(f"peak RSS of the scoring process: {info['peak_mb']:,.0f} MB")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
