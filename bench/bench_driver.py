"""The annual run's per-resident steps on the driver, without scoring: memory and time by N.

    .venv/bin/python bench/bench_driver.py --copies 10 [--source STORE] [--scores SCORES]
                                           [--workdir DIR] [--budget 1000]
                                           [--steps eligibility,decisions,select,contacts]

What grows with the number of residents on the driver of ``kenshin.annual.run_annual`` (the
scoring itself streams chunk by chunk) is measured step by step, each in a child process of its
own (so one step's peak is not another's):

* ``eligibility``: exactly ``kenshin.annual.eligible`` (checkups of FY and FY-1, enrollment
  periods covering the scoring day, ``scoring.score.eligible_residents``);
* ``eligibility_store``: ``scoring.score.eligible_in_store`` (the same index and counts,
  reading only the pseudonyms of the covering periods), where the code has it;
* ``decisions``: the letter decisions (``scoring.selection.decide``) of every 50,000-resident
  chunk kept as ``ScoreTally`` keeps them, then concatenated (``ScoreTally.decisions``);
* ``select``: ``kenshin.annual.select_residents`` (letters on: opt-outs, contact status, the
  global half ``scoring.selection.select_decided``) on those decisions;
* ``select_decided``: the same with letters off (no contact status: opt-outs and
  ``select_decided`` only);
* ``contacts``: ``kenshin.annual.contact_status`` alone;
* ``tables``: what the run does with the selection after it (letters on), without explaining
  or typesetting: ``select_residents``, ``with_factors`` (no factors), ``letters_sent``,
  ``write_tables`` (the selection checked and written, Parquet and CSV).

Inputs for N residents: the 1M store (``--source``, bench/bench_spark.py's
``store_100000_x25``) replicated ``--copies`` K times under new pseudonyms (as
bench/bench_score.py's ``_replicate``), but only what these steps read: the checkups of FY2025
and FY2024 (pseudonym, exam date, age, sex), the enrollment and the contacts. The decisions are
``decide()`` of the real scores of that store (``--scores``, a copy of its pandas run's
``scores.parquet``), tiled K times under the same new pseudonyms. Both are built once into
``--workdir`` (≈ 1 minute and 0.3 GB per copy).

Prints, per step: the child's RSS before the step (imports, and for ``select`` the decisions it
is given), its peak (sampled every 20 ms, and its VmHWM, bench/memory.py, which also counts
what the child did before the step: reading the decisions it is given), seconds, and the rows it
produced, with a digest of its output (to check that a change keeps it byte for byte; a
selection as the run writes it, ``kenshin.annual.as_written``) and, for ``tables``, of the files
written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FY = 2025
SOURCE = Path("/work/bench-spark-1m/store_100000_x25")
SCORES = Path("/work/bench-spark-1m/driver/scores_1m.parquet")
WORKDIR = Path("/work/bench-spark-1m/driver")
STEPS = (
    "eligibility", "eligibility_store", "decisions", "select_decided", "select", "contacts",
    "tables",
)  # fmt: skip
CHECKUP_COLUMNS = ["pseudonym", "exam_date", "age", "sex"]
#: What a step reports besides its memory, time, rows and digest.
EXTRAS = ("counts", "kept_mb", "kept_mb_without_strings", "concat_s", "written_mb", "files_digest")


def _rename(values: list[str], k: int, cache: dict[str, str]) -> list[str]:
    """New pseudonyms of copy ``k`` (the same in every table), as bench_score._replicate makes
    them but salted apart: the source may itself be a replica made by _replicate, whose copy
    ``k`` are ``sha256(f"{k}:{p}")`` of its first copy's pseudonyms ``p``."""
    out = []
    for p in values:
        q = cache.get(p)
        if q is None:
            q = cache[p] = hashlib.sha256(f"driver-{k}:{p}".encode()).hexdigest()[:16]
        out.append(q)
    return out


def build_store(src: Path, dst: Path, copies: int) -> None:
    """A store of ``copies`` × ``src``'s residents holding only what the driver steps read."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from data.store import MANIFEST, PRIVATE, fingerprint

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    files = {
        **{
            Path("checkups") / f"fiscal_year={fy}" / "part-0.parquet": CHECKUP_COLUMNS
            for fy in (FY - 1, FY)
        },
        Path("enrollment.parquet"): None,
        Path(PRIVATE) / "contacts.parquet": None,
    }
    tables = {rel: pq.read_table(src / rel, columns=cols) for rel, cols in files.items()}
    writers = {}
    for rel, t in tables.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        writers[rel] = pq.ParquetWriter(tmp / rel, t.schema, compression="zstd")
    for k in range(copies):
        cache: dict[str, str] = {}
        for rel, t in tables.items():
            if k:
                i = t.schema.get_field_index("pseudonym")
                new = pa.array(_rename(t.column(i).to_pylist(), k, cache), t.schema.field(i).type)
                t = t.set_column(i, "pseudonym", new)
            writers[rel].write_table(t, row_group_size=1_000_000)
    for w in writers.values():
        w.close()
    manifest = json.loads((src / MANIFEST).read_text())
    manifest["store_fingerprint"] = fingerprint(tmp)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def build_decided(scores: Path, dst: Path, copies: int, budget: int) -> None:
    """``decide()`` of ``scores`` by 50,000-resident chunks, tiled ``copies`` times (letter and
    outcome as their codes: :func:`_decided_chunks` turns them back into decide's table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scoring.selection import SELECTION_INPUTS, decide

    cfg = _selection(budget)
    cols = list(dict.fromkeys([*SELECTION_INPUTS, "sex"]))
    f = pq.ParquetFile(scores)
    chunks = []
    for b in f.iter_batches(50_000, columns=cols):
        d = decide(b.to_pandas(), cfg)
        d["letter"] = d["letter"].cat.codes
        d["outcome"] = d["outcome"].cat.codes
        d["pseudonym"] = d["pseudonym"].astype(object)
        chunks.append(d)
    tmp = dst.with_name(dst.name + ".tmp")
    writer = None
    for k in range(copies):
        cache: dict[str, str] = {}
        for d in chunks:
            if k:
                d = d.assign(pseudonym=_rename(d["pseudonym"].tolist(), k, cache))
            t = pa.Table.from_pandas(d, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema, compression="zstd")
            writer.write_table(t)
    writer.close()
    tmp.rename(dst)


def _selection(budget: int):
    from scoring.selection import Budget, load_config

    return load_config().model_copy(update={"budget": Budget(advice=budget, see_doctor=budget)})


def _decided_chunks(path: Path):
    """The decided chunks as ``ScoreTally.decided`` holds them: decide's dtypes (the scores'
    pseudonyms are pandas strings, age and sex int64), and its compaction of age and sex where
    the code under test has one (scoring.selection ``_small``). In the run the pseudonyms are
    the eligibility index's own ``str`` objects (score_chunk passes them on); here they are
    made anew, ≈ 73 bytes a resident the run does not spend on the decisions."""
    import pandas as pd
    import pyarrow.parquet as pq

    from scoring import selection
    from scoring.selection import _LETTERS, OUTCOMES

    compact = getattr(selection, "_compact", lambda x: x)
    small = getattr(selection, "_small", lambda x: x)
    for b in pq.ParquetFile(path).iter_batches(50_000):
        d = b.to_pandas()
        d["pseudonym"] = compact(d["pseudonym"].astype("string"))
        d["age"], d["sex"] = small(d["age"].to_numpy()), small(d["sex"].to_numpy())
        d["letter"] = pd.Categorical.from_codes(d["letter"], categories=_LETTERS)
        d["outcome"] = pd.Categorical.from_codes(d["outcome"], categories=OUTCOMES)
        yield d


def _digest(frame) -> str:
    """Of the frame as the run writes it (a selection's text columns held as categories are
    hashed as the text they stand for, where the code under test holds them so)."""
    import pandas as pd

    from kenshin import annual

    frame = getattr(annual, "as_written", lambda f: f)(frame)
    h = hashlib.sha256(str(list(frame.dtypes.astype(str).items())).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def child(step: str, store: Path, decided: Path, budget: int) -> dict:
    """Run one step in this process; its memory and time."""
    import threading

    import psutil

    me = psutil.Process()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    import pandas as pd

    from kenshin.annual import (
        AnnualRunConfig,
        contact_status,
        eligible,
        release_memory,
        select_residents,
    )
    from scoring.score import load_scoring_config

    cfg = AnnualRunConfig(
        store=store, fiscal_year=FY, out=store.parent / "out", workdir=store.parent,
        scoring=load_scoring_config(), selection=_selection(budget),
        letters=step != "select_decided",
        report=False, log_mlflow=False,
    )  # fmt: skip
    info: dict = {}
    given = None
    if step in ("select", "select_decided", "tables"):
        given = pd.concat(list(_decided_chunks(decided)), ignore_index=True)
    release_memory()
    time.sleep(0.1)
    base = me.memory_info().rss
    peak[0] = base
    t0 = time.perf_counter()
    if step == "eligibility":
        elig = eligible(cfg)
        out = elig.index
        info["counts"] = elig.counts
    elif step == "eligibility_store":
        from scoring.score import eligible_in_store

        elig = eligible_in_store(store, FY, cfg.day, cfg.scoring)
        out = elig.index
        info["counts"] = elig.counts
    elif step == "decisions":
        kept = list(_decided_chunks(decided))
        info["kept_mb"] = sum(d.memory_usage(deep=True).sum() for d in kept) / 2**20
        info["kept_mb_without_strings"] = sum(d.memory_usage().sum() for d in kept) / 2**20
        t1 = time.perf_counter()
        out = pd.concat(kept, ignore_index=True)
        kept = []
        info["concat_s"] = time.perf_counter() - t1
    elif step in ("select", "select_decided"):
        out = select_residents(cfg, given)
    elif step == "tables":
        from kenshin.annual import letters_sent, with_factors, write_tables
        from models.drift import drift_table
        from scoring.outputs import AnnualOutputs

        selection = select_residents(cfg, given)
        given = None
        factors = pd.DataFrame(
            columns=["pseudonym", "outcome", "factor_1", "factor_2", "factor_3"], dtype="string"
        )
        selection = with_factors(selection, factors)
        sent = letters_sent(selection, cfg.day)
        root = store.parent / "out-tables"
        root.mkdir(exist_ok=True)
        drift = drift_table(None, {}, [], {}).astype({"status": "string"})
        write_tables(AnnualOutputs(root), selection, drift, sent)
        info["written_mb"] = sum(f.stat().st_size for f in root.iterdir()) / 2**20
        out = selection
    elif step == "contacts":
        out = contact_status(store).to_frame("problems").reset_index()
    else:
        raise ValueError(step)
    seconds = time.perf_counter() - t0
    time.sleep(0.05)
    stop.set()
    # Before the digest: hashing Arrow text makes a Python string of every pseudonym.
    from memory import own_peak_mb

    own_peak = own_peak_mb()
    if step == "tables":  # the bytes written, read a block at a time
        files = hashlib.sha256()
        for f in sorted(root.iterdir()):
            with open(f, "rb") as fh:
                files.update(f.name.encode() + hashlib.file_digest(fh, "sha256").digest())
        info["files_digest"] = files.hexdigest()[:16]
    info.update(
        rows=len(out),
        out_mb=out.memory_usage(deep=True).sum() / 2**20,
        digest=_digest(out),
        base_mb=base / 2**20,
        peak_mb=peak[0] / 2**20,
        own_peak_mb=own_peak,
        seconds=seconds,
    )
    return info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=1, help="N = K × the source's residents")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--scores", type=Path, default=SCORES)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir.resolve()
    store, decided = work / f"store_x{args.copies}", work / f"decided_x{args.copies}.parquet"
    if args.child:
        print(json.dumps(child(args.child, store, decided, args.budget)))
        return
    os.environ.setdefault("KENSHIN_PSEUDONYM_KEY", "bench-key-0123456789")
    work.mkdir(parents=True, exist_ok=True)
    if not (store / "manifest.json").exists():
        t0 = time.perf_counter()
        build_store(args.source, store, args.copies)
        print(f"built {store}: {time.perf_counter() - t0:.0f} s")
    if not decided.exists():
        t0 = time.perf_counter()
        build_decided(args.scores, decided, args.copies, args.budget)
        print(f"built {decided}: {time.perf_counter() - t0:.0f} s")
    print(f"copies ×{args.copies} of {args.source}; load average {os.getloadavg()}")
    for step in args.steps.split(","):
        res = subprocess.run(
            [sys.executable, __file__, "--child", step, "--copies", str(args.copies),
             "--workdir", str(work), "--budget", str(args.budget)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        info = json.loads(res.stdout.strip().splitlines()[-1])
        extra = {k: v for k, v in info.items() if k in EXTRAS}
        print(
            f"{step:12s} rows {info['rows']:>11,}  before {info['base_mb']:6,.0f} MB  "
            f"peak {info['peak_mb']:6,.0f} MB (VmHWM {info['own_peak_mb']:6,.0f})  "
            f"+{info['peak_mb'] - info['base_mb']:6,.0f} MB  output {info['out_mb']:6,.0f} MB  "
            f"{info['seconds']:6.1f} s  digest {info['digest']}"
            + (f"  {json.dumps(extra)}" if extra else "")
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
