"""Benchmark: ingest of the MHLW XML form of a synthetic cohort.

Writes the cohort (default 100,000 residents × 6 fiscal years) as a CSV bundle and as an XML
bundle (exchange archives, one per fiscal year, + the same enrollment/contacts CSVs), then, each
in a fresh process so peak RSS is its own:

1. XML reader only (frames discarded as they stream): documents/s and peak RSS, on a quarter of
   the documents and on all of them: memory flat in the number of files;
2. full ``ingest`` of the XML bundle and of the CSV bundle: wall time, documents/s, peak RSS
   (ingest holds the whole table, so its memory grows with rows whatever the format);
3. the two stores are compared: identical checkups (provenance columns aside).

Run from the repository root::

    .venv/bin/python bench/bench_xml.py [--residents 100000] [--years 6] [--workdir DIR]

Peak RSS is ``ru_maxrss`` of the measuring process and of its worker processes (Linux: KiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TODAY = "2099-01-01"  # the synthetic cohort ends in the future relative to real today


def _peak_mib() -> dict[str, float]:
    """Peak RSS of this process and of its workers, and CPU seconds used by both (CPU time
    is what the machine's other load cannot inflate; wall time is)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return {
        "peak_rss_mib": round(own.ru_maxrss / 1024, 1),
        "peak_rss_workers_mib": round(kids.ru_maxrss / 1024, 1),
        "cpu_s": round(cpu, 1),
    }


def phase_prepare(args) -> dict:
    from data.mhlw_xml import write_exchange_archive
    from data.normalise import fiscal_year
    from data.synth import SynthConfig, generate, write_bundle

    work = Path(args.workdir)
    t0 = time.perf_counter()
    bundle = generate(SynthConfig(residents=args.residents, years=args.years, seed=args.seed))
    t_gen = time.perf_counter() - t0
    for sub in ("csv", "xml", "xml_quarter"):
        shutil.rmtree(work / sub, ignore_errors=True)
    write_bundle(bundle, work / "csv")
    write_bundle(bundle, work / "xml")
    (work / "xml" / "checkups.csv").unlink()
    t0 = time.perf_counter()
    archives = write_exchange_archive(bundle.checkups, bundle.contacts, work / "xml")
    t_xml = time.perf_counter() - t0
    # A quarter of the documents (every 4th checkup), written the same way.
    quarter = bundle.checkups.iloc[::4]
    write_exchange_archive(quarter, bundle.contacts, work / "xml_quarter")
    n = len(bundle.checkups)
    size = sum(p.stat().st_size for p in archives)
    return {
        "documents": n,
        "documents_quarter": len(quarter),
        "archives": len(archives),
        "archive_mib": round(size / 2**20, 1),
        "generate_s": round(t_gen, 1),
        "write_xml_s": round(t_xml, 1),
        "write_xml_docs_per_s": round(n / t_xml),
        "fiscal_years": sorted(int(y) for y in fiscal_year(bundle.checkups["exam_date"]).unique()),
    }


def phase_read(args) -> dict:
    from data.mhlw_xml.reader import finalise, read_xml_path

    folder = Path(args.workdir) / args.target
    t0 = time.perf_counter()
    n = 0
    for archive in sorted(folder.glob("*.zip")):
        for frame in read_xml_path(archive):
            kept, _ = finalise(frame)  # per batch here: the same work, nothing kept
            n += len(kept)  # checkup documents (the index files are counted apart)
    dt = time.perf_counter() - t0
    return {"documents": n, "wall_s": round(dt, 2), "docs_per_s": round(n / dt), **_peak_mib()}


def phase_ingest(args) -> dict:
    from data.ingest import IngestConfig, ingest

    work = Path(args.workdir)
    store = work / f"store_{args.target}"
    t0 = time.perf_counter()
    result = ingest(work / args.target, store, IngestConfig(today=TODAY, force=True))
    dt = time.perf_counter() - t0
    acct = result.accounting["checkups"]
    return {
        "documents": acct.read,
        "loaded": acct.loaded,
        "rejected": acct.rejected,
        "wall_s": round(dt, 2),
        "docs_per_s": round(acct.read / dt),
        **_peak_mib(),
    }


def phase_compare(args) -> dict:
    import pandas as pd

    from data.store import read_checkups

    work = Path(args.workdir)
    prov = ["_source_file", "_source_row"]
    a = read_checkups(work / "store_csv").drop(columns=prov)
    b = read_checkups(work / "store_xml").drop(columns=prov)
    pd.testing.assert_frame_equal(a, b)
    return {"identical": True, "rows": len(a)}


PHASES = {
    "prepare": phase_prepare,
    "read": phase_read,
    "ingest": phase_ingest,
    "compare": phase_compare,
}


def _run(phase: str, args, target: str = "") -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--workdir", args.workdir]
    cmd += ["--residents", str(args.residents), "--years", str(args.years)]
    cmd += ["--seed", str(args.seed), "--target", target]
    env = {
        **os.environ,
        "KENSHIN_PSEUDONYM_KEY": os.environ.get("KENSHIN_PSEUDONYM_KEY", "bench-key-0123456789"),
    }
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--residents", type=int, default=100_000)
    p.add_argument("--years", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/kenshin_bench_xml")
    p.add_argument("--phase", choices=list(PHASES))
    p.add_argument("--target", default="")
    p.add_argument("--skip-prepare", action="store_true", help="reuse the bundles in --workdir")
    args = p.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    print(f"cohort: {args.residents:,} residents × {args.years} years, workdir {args.workdir}")
    print(f"cores: {os.cpu_count()}  (reader uses up to 2 worker processes)")
    if not args.skip_prepare:
        prep = _run("prepare", args)
        print(f"prepare: {prep}")
    rq = _run("read", args, "xml_quarter")
    rf = _run("read", args, "xml")
    print(f"XML reader, 1/4 of the documents: {rq}")
    print(f"XML reader, all documents:       {rf}")
    ix = _run("ingest", args, "xml")
    ic = _run("ingest", args, "csv")
    print(f"ingest XML bundle: {ix}")
    print(f"ingest CSV bundle: {ic}")
    cmp_ = _run("compare", args)
    print(f"stores compared: {cmp_}")
    print()
    print(
        f"XML ingest: {ix['documents']:,} documents in {ix['wall_s']} s = "
        f"{ix['docs_per_s']:,} documents/s (target ≥ 2,000); reader alone "
        f"{rf['docs_per_s']:,} documents/s"
    )
    print(
        f"CPU cost: XML ingest {ix['cpu_s']} CPU-s = {ix['documents'] / ix['cpu_s']:,.0f} "
        f"documents per CPU-second (2 free cores: ~{2 * ix['documents'] / ix['cpu_s']:,.0f}/s); "
        f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        "reader peak RSS main/worker MiB: "
        f"1/4 {rq['peak_rss_mib']}/{rq['peak_rss_workers_mib']}, "
        f"full {rf['peak_rss_mib']}/{rf['peak_rss_workers_mib']} "
        f"({rq['documents']:,} vs {rf['documents']:,} documents)"
    )
    print(
        f"ingest peak RSS MiB: XML {ix['peak_rss_mib']} (workers {ix['peak_rss_workers_mib']}), "
        f"CSV {ic['peak_rss_mib']}"
    )


if __name__ == "__main__":
    main()
