"""Benchmark the advice letters: N LetterRequest rows → PDFs, print files, manifest.

Usage: ``.venv/bin/python bench/bench_letters.py [--letters 400] [--workers 2] [--out DIR]
[--memory 2000]``.

Requests are made from the test fixture's six residents (ja, やさしい日本語, en, see_doctor, …)
with seeded variation of values and risks, and of names and addresses (common kanji, so that the
embedded font subset differs from letter to letter as it does for real residents). Prints:

- letters/s of wall time for rendering (process pool) and for the whole call (validation,
  rendering, print-file merge, manifest), and for a resume rerun that has nothing to render;
- CPU milliseconds per letter in the renderers, with the letters/s that this gives on idle
  cores: on a shared machine other processes take CPU time from the wall-clock figures, not
  from these;
- with ``--memory N``: one renderer in this process renders N letters and its resident memory
  is printed as it goes (Typst keeps caches between letters: this shows they stay bounded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.letters import LetterConfig, render_letters
from scoring.letters.render import _Renderer, _rows
from scoring.letters.schema import normalise_requests
from tests.scoring.letter_helpers import requests

SURNAMES = (
    "佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 林 "
    "斎藤 清水 山崎 森 池田 橋本 阿部 石川 山下 中島 石井 小川 前田 岡田 長谷川 藤田 後藤 近藤 "
    "村上 遠藤 青木 坂本 斉藤 福田 太田 西村 藤井 金子 岡本 藤原 中野 三浦 原田 松田 竹内 小野 "
    "髙橋 山﨑 渡邊 齋藤 澤田 濱田"
).split()
GIVEN = (
    "翔太 蓮 大翔 悠真 陽翔 湊 樹 大和 健一 誠 浩 隆 茂 博 勇 清 実 進 和子 洋子 幸子 節子 "
    "美智子 恵子 京子 陽菜 結衣 葵 凛 咲良 美咲 愛 真由美 直樹 智子 裕子 明美 久美子 由美子 "
    "さくら ひなた みゆき ゆうこ"
).split()
TOWNS = (
    "中央 本町 栄町 緑町 旭町 桜台 若葉 東雲 青葉台 柳原 鶴見 梅ヶ丘 松風 竹ノ塚 富士見 "
    "寿 日吉 白鷺 藤沢 菊川"
).split()


def make_requests(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = requests()
    df = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    df["pseudonym"] = [f"{i:016x}" for i in rng.choice(2**60, size=n, replace=False)]
    df["person_id"] = [f"12-{i:06d}" for i in range(n)]
    df["postal_code"] = [f"100-{rng.integers(0, 10000):04d}" for _ in range(n)]
    ja = df["language"] != "en"
    names = [f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}" for _ in range(n)]
    df["name"] = np.where(ja, names, df["name"])
    df["address"] = [
        f"架空区{rng.choice(TOWNS)}{rng.integers(1, 6)}丁目{rng.integers(1, 30)}番"
        f"{rng.integers(1, 20)}号"
        + (f" 架空荘{rng.integers(101, 410)}" if rng.random() < 0.4 else "")
        for _ in range(n)
    ]
    adv = df["letter_type"] == "advice"
    risk = rng.uniform(0.1, 0.45, size=n).round(3)
    df.loc[adv, "risk"] = risk[adv]
    df.loc[adv, "whatif_risk_before"] = risk[adv]
    df.loc[adv, "whatif_risk_after"] = (risk[adv] * rng.uniform(0.5, 0.9, size=adv.sum())).round(3)
    df["hba1c"] = np.where(adv, rng.uniform(5.2, 6.4, size=n).round(1), df["hba1c"])
    df["sbp"] = np.where(adv, rng.integers(110, 140, size=n), df["sbp"]).astype(float)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--letters", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--memory", type=int, default=0, help="letters for the memory check")
    args = ap.parse_args()
    import typst

    df = make_requests(args.letters)
    cfg = LetterConfig(issue_date=date(2025, 4, 1), workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "letters"
        m = render_letters(df, out, cfg)
        n = max(m.rendered, 1)
        pages = int(m.frame["pages"].sum())
        print(f"machine             : {os.cpu_count()} cores, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; typst "
              f"{typst.__version__}")  # fmt: skip
        print(
            f"letters             : {m.rendered} rendered ({pages} pages), {args.workers} workers"
        )
        print(
            f"render (wall)       : {m.render_seconds:.1f} s → {m.letters_per_second:.1f} letters/s"
        )
        print(
            f"whole call (wall)   : {m.total_seconds:.1f} s → {m.rendered / m.total_seconds:.1f} "
            "letters/s (validation, render, print merge, manifest)"
        )
        cpu = m.render_cpu_seconds / n
        print(
            f"CPU per letter      : {cpu * 1000:.0f} ms in the renderers → {args.workers / cpu:.1f} "
            f"letters/s on {args.workers} idle cores"
        )
        sizes = [(out / f).stat().st_size for f in m.frame["file"]]
        print(f"letter size         : {np.mean(sizes) / 1024:.0f} KiB mean; print files "
              f"{sum(p.stat().st_size for p in m.print_files) / 2**20:.1f} MiB")  # fmt: skip
        t0 = time.perf_counter()
        m2 = render_letters(df, out, cfg)
        print(f"resume (all done)   : {time.perf_counter() - t0:.1f} s, skipped {m2.skipped}")
    if args.memory:
        memory_check(args.memory, cfg)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_check(n: int, cfg: LetterConfig) -> None:
    """Resident memory of one renderer over ``n`` letters (in this process)."""
    from scoring.letters.catalogue import DEFAULT_CATALOGUE

    rows = _rows(normalise_requests(make_requests(n, seed=1)))
    renderer = _Renderer(str(DEFAULT_CATALOGUE), cfg)
    marks = {0, n // 4, n // 2, 3 * n // 4, n - 1}
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        renderer.render(row)
        if i in marks:
            ms = (time.perf_counter() - t0) / (i + 1) * 1000
            print(f"memory, letter {i + 1:>6}: {_rss_mib():.0f} MiB RSS ({ms:.1f} ms/letter)")


if __name__ == "__main__":
    main()
