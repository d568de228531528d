"""The annual scoring on the pandas engine and on Spark, side by side, in the same run.

    .venv/bin/python bench/bench_spark.py [--residents 2000] [--replicate 1] [--master local[2]]
                                          [--residents-per-group 20000] [--workdir DIR]
                                          [--ward DEMO_WORKDIR] [--budget 1000]
                                          [--see-doctor-unbudgeted] [--engines pandas,spark]

1. (child process, skipped when ``--workdir`` already holds them) a ward of ``--residents``
   × 6 years → ingest → train → promote; ``--replicate K`` scores a store K times larger
   (residents repeated under new pseudonyms, as bench/bench_score.py does);
2. (child process per engine) ``run_annual`` for FY2025, letters and report off (selection,
   explanations and drift on; advice and see-doctor budgets ``--budget``, 1,000 each, as
   bench/bench_score.py), ``engine="pandas"`` then ``engine="spark"`` on ``--master``.

Prints, per engine: residents scored, seconds of the scoring step, residents/s and residents/s
per core (pandas: its worker processes or prediction threads, whichever are more,
``KENSHIN_SCORE_WORKERS`` / ``KENSHIN_PREDICT_THREADS``, default the usable cores; Spark:
``--cores``, default 2, as ``local[2]``), the peak RSS of the driver process (sampled, and its
VmHWM: bench/memory.py) and its own CPU seconds (the serial part a cluster does not spread),
and for Spark the peak RSS of the JVM and of its Python workers together (the executors in
local mode) and how long the run waited for Spark's start after the model load and
eligibility (the session starts beside them). Default sizes are small (``./run bench`` runs
every bench); the issue's figures use ``--residents 100000 --replicate 10`` (1M) and more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_score import _child, _replicate
from wards import make_ward

FY = 2025

_RUN = r"""
import json, os, resource, sys, threading, time
from pathlib import Path
import psutil

peaks = {"driver": 0, "jvm": 0, "workers": 0}
stop = threading.Event()

def sample():
    me = psutil.Process()
    while not stop.is_set():
        try:
            peaks["driver"] = max(peaks["driver"], me.memory_info().rss)
            jvm = workers = 0
            for p in me.children(recursive=True):
                try:
                    name, rss = " ".join(p.cmdline()), p.memory_info().rss
                except psutil.Error:
                    continue
                if "java" in p.name():
                    jvm += rss
                elif "pyspark" in name or "daemon" in name or "python" in p.name():
                    workers += rss
            peaks["jvm"] = max(peaks["jvm"], jvm)
            peaks["workers"] = max(peaks["workers"], workers)
        except psutil.Error:
            pass
        time.sleep(0.2)

threading.Thread(target=sample, daemon=True).start()
from kenshin.annual import AnnualRunConfig, run_annual
from scoring.score import load_scoring_config
from scoring.selection import Budget, load_config
args = json.loads(sys.argv[1])
extra = {}
if args["engine"] == "spark":
    conf = Path(args["out"] + ".spark.toml")
    conf.write_text(
        f"residents_per_group = {args['per_group']}\n[conf]\n"
        f'"spark.sql.shuffle.partitions" = {args["cores"] * 2}\n'
        # local mode: the executors' tasks run in the driver's JVM, whose default heap (1 GB)
        # ran out in the explain job of 1M residents (every see-doctor resident explained)
        f'"spark.driver.memory" = "{args["jvm_memory"]}"\n'
    )
    extra = {"engine": "spark", "spark_master": args["master"], "spark_config": conf}
cfg = AnnualRunConfig(
    store=Path(args["store"]), fiscal_year=args["fy"], out=Path(args["out"]),
    workdir=Path(args["workdir"]), scoring=load_scoring_config(),
    selection=load_config().model_copy(
        update={"budget": Budget(advice=args["budget"], see_doctor=args["see_doctor_budget"])}
    ),
    letters=False, report=False, log_mlflow=False, **extra,
)
r = run_annual(cfg)
stop.set()
sys.path.insert(0, args["bench"])
from memory import own_peak_mb
peaks["own_peak"] = own_peak_mb() * 2**20  # not ru_maxrss: it carries the bench's own peak
me = resource.getrusage(resource.RUSAGE_SELF)
cpu = me.ru_utime + me.ru_stime  # the driver's own CPU (not its workers', not the JVM's)
print(json.dumps({"counts": r.counts, "seconds": r.seconds, "peaks": peaks, "cpu": cpu}))
"""


def _engine(engine: str, store: Path, workdir: Path, out: Path, args, env: dict) -> dict:
    spec = {
        "engine": engine, "store": str(store), "workdir": str(workdir), "out": str(out),
        "fy": FY, "master": args.master, "cores": args.cores, "per_group": args.residents_per_group,
        "budget": args.budget,
        "see_doctor_budget": None if args.see_doctor_unbudgeted else args.budget,
        "jvm_memory": args.jvm_memory, "bench": str(Path(__file__).resolve().parent),
    }  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(spec)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if res.returncode:
        sys.exit(f"{engine} engine failed (exit {res.returncode}):\n{res.stderr[-4000:]}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["wall"] = time.perf_counter() - t0
    return info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=2_000)
    parser.add_argument("--replicate", type=int, default=1)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cores", type=int, default=2, help="cores both engines may use")
    parser.add_argument("--residents-per-group", type=int, default=20_000)
    parser.add_argument(
        "--budget", type=int, default=1000,
        help="advice and see-doctor budgets (SHAP runs for these residents and the control arm; "
        "without a see-doctor budget every see-doctor resident of a 1M store is explained)",
    )  # fmt: skip
    parser.add_argument(
        "--see-doctor-unbudgeted", action="store_true",
        help="no see-doctor budget (the shipped selection.toml): every see-doctor resident is "
        "explained, the explanations streamed chunk by chunk",
    )  # fmt: skip
    parser.add_argument(
        "--jvm-memory", default="4g", help="Spark's JVM heap (spark.driver.memory, local mode)"
    )
    parser.add_argument(
        "--engines", default="pandas,spark", help="which engines to run, in order (comma-separated)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kenshin-bench-spark"))
    parser.add_argument(
        "--ward", type=Path, default=None,
        help="an existing work folder with store/ and a champion model (e.g. a kenshin demo's)",
    )  # fmt: skip
    args = parser.parse_args()
    work = args.workdir.resolve()
    env = {**os.environ, "KENSHIN_PSEUDONYM_KEY": "bench-key-0123456789"}
    env.pop("MLFLOW_TRACKING_URI", None)
    ward = work / f"ward_{args.residents}"
    model_workdir = ward / "work"
    if args.ward is not None:
        ward = model_workdir = args.ward.resolve()
    elif not (ward / "work" / "mlflow.db").exists():
        t0 = time.perf_counter()
        make_ward(ward, args.residents, env=env)
        _child(
            "from pathlib import Path; from kenshin.commands import run_train; "
            "from models.registry import promote; "
            f"run_train(Path({str(ward / 'store')!r}), Path({str(ward / 'work')!r})); "
            f"promote(Path({str(ward / 'work')!r}))",
            env,
        )
        print(f"ward {args.residents:,}: prepared in {time.perf_counter() - t0:.0f} s")
    store = ward / "store"
    if args.replicate > 1:
        big = work / f"store_{args.residents}_x{args.replicate}"
        if not (big / "manifest.json").exists():
            _replicate(store, big, args.replicate)
        store = big
    rates = {}
    for engine in args.engines.split(","):
        out = work / f"out_{engine}_{args.residents}_x{args.replicate}"
        info = _engine(engine, store, model_workdir, out, args, env)
        c, s, p = info["counts"], info["seconds"], info["peaks"]
        rate = c["scored"] / s["score"] if s.get("score") else 0.0
        # The pandas engine scores in kenshin.workers.SCORE_WORKERS processes, predicting on
        # models.train.PREDICT_THREADS threads; Spark on one thread per task, --cores at a time.
        cores = args.cores if engine == "spark" else _pandas_threads(env)
        rates[engine] = rate / cores
        mb = {k: v / 2**20 for k, v in p.items()}
        line = (
            f"{engine:>6}: scored {c['scored']:,} in {s['score']:.1f} s → {rate:,.0f} residents/s, "
            f"{rate / cores:,.0f} per core ({cores}); explained {c['explained']:,} in "
            f"{s['explain']:.1f} s; total {s['total']:.1f} s (wall {info['wall']:.0f} s"
            f" with start-up); driver peak {mb['driver']:,.0f} MB (VmHWM {mb['own_peak']:,.0f})"
            f", driver CPU {info['cpu']:.0f} s"
        )
        if "spark_start_wait" in s:  # Spark started during the model load and eligibility
            line += f"; waited {s['spark_start_wait']:.1f} s more for Spark's start"
        if engine == "spark":
            line += f"; JVM peak {mb['jvm']:,.0f} MB, Python workers peak {mb['workers']:,.0f} MB"
        elif mb["workers"]:  # kenshin.workers' processes (RSS: shared pages counted in each)
            line += f"; worker processes peak {mb['workers']:,.0f} MB RSS together"
        print(line)
    if rates.get("pandas") and rates.get("spark"):
        print(f"Spark ÷ pandas throughput per core: {rates['spark'] / rates['pandas']:.2f}")
    print(f"load average at end: {os.getloadavg()}")


def _pandas_threads(env: dict) -> int:
    """The cores the pandas engine uses in a child with ``env``: its prediction threads
    (models.train) or its worker processes (kenshin.workers), whichever are more."""
    import subprocess
    import sys

    code = (
        "import models.train as t, kenshin.workers as w; "
        "print(max(t.PREDICT_THREADS, w.SCORE_WORKERS))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(out.stdout.strip() or 1)


if __name__ == "__main__":
    main()
