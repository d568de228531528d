"""Fictional contact details: common surnames × given names combined at random, a fictional ward.

No real person is described: names are random combinations of common name parts, and the
addresses lie in 東京都架空区 (a ward that does not exist) with postal codes in an unused range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SURNAMES = (
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
    ("村上", "ムラカミ"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("坂本", "サカモト"),
    ("斉藤", "サイトウ"),
    ("福田", "フクダ"),
    ("太田", "オオタ"),
    ("西村", "ニシムラ"),
    ("藤井", "フジイ"),
    ("金子", "カネコ"),
    ("岡本", "オカモト"),
    ("藤原", "フジワラ"),
    ("中野", "ナカノ"),
    ("三浦", "ミウラ"),
    ("原田", "ハラダ"),
    ("中川", "ナカガワ"),
)
MALE = (
    ("翔", "ショウ"),
    ("大輔", "ダイスケ"),
    ("拓也", "タクヤ"),
    ("健太", "ケンタ"),
    ("誠", "マコト"),
    ("浩", "ヒロシ"),
    ("学", "マナブ"),
    ("聡", "サトシ"),
    ("隆", "タカシ"),
    ("健一", "ケンイチ"),
    ("和也", "カズヤ"),
    ("直樹", "ナオキ"),
    ("哲也", "テツヤ"),
    ("剛", "ツヨシ"),
    ("修", "オサム"),
    ("茂", "シゲル"),
    ("清", "キヨシ"),
    ("博", "ヒロシ"),
    ("勝", "マサル"),
    ("実", "ミノル"),
    ("進", "ススム"),
    ("正人", "マサト"),
    ("秀樹", "ヒデキ"),
    ("一郎", "イチロウ"),
    ("浩二", "コウジ"),
    ("康弘", "ヤスヒロ"),
    ("信夫", "ノブオ"),
    ("昭", "アキラ"),
    ("豊", "ユタカ"),
    ("和夫", "カズオ"),
)
FEMALE = (
    ("陽子", "ヨウコ"),
    ("恵子", "ケイコ"),
    ("京子", "キョウコ"),
    ("幸子", "サチコ"),
    ("和子", "カズコ"),
    ("洋子", "ヨウコ"),
    ("美穂", "ミホ"),
    ("直美", "ナオミ"),
    ("由美", "ユミ"),
    ("真由美", "マユミ"),
    ("久美子", "クミコ"),
    ("智子", "トモコ"),
    ("裕子", "ユウコ"),
    ("明美", "アケミ"),
    ("香織", "カオリ"),
    ("恵", "メグミ"),
    ("愛", "アイ"),
    ("美紀", "ミキ"),
    ("純子", "ジュンコ"),
    ("典子", "ノリコ"),
    ("節子", "セツコ"),
    ("悦子", "エツコ"),
    ("順子", "ジュンコ"),
    ("弘子", "ヒロコ"),
    ("千代子", "チヨコ"),
    ("みどり", "ミドリ"),
    ("さくら", "サクラ"),
    ("麻衣", "マイ"),
    ("彩", "アヤ"),
    ("美香", "ミカ"),
)
TOWNS = (
    ("架空一丁町", "199-0001"),
    ("桜ヶ丘", "199-0002"),
    ("緑町", "199-0003"),
    ("東雲台", "199-0004"),
    ("若葉", "199-0005"),
    ("川辺町", "199-0011"),
    ("本郷西", "199-0012"),
    ("南原", "199-0013"),
    ("北山", "199-0014"),
    ("栄町", "199-0021"),
    ("朝日台", "199-0022"),
    ("富士見", "199-0023"),
    ("中央", "199-0031"),
    ("旭町", "199-0032"),
)
LANGS = ("en", "zh", "ko", "vi", "ja-easy")
LANG_P = (0.007, 0.01, 0.006, 0.005, 0.007)  # ~3.5 % not Japanese-standard


def contacts(person_id: np.ndarray, sex: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(person_id)
    s = rng.integers(0, len(SURNAMES), n)
    gm = rng.integers(0, len(MALE), n)
    gf = rng.integers(0, len(FEMALE), n)
    sur = np.array(SURNAMES, dtype=object)
    male, female = np.array(MALE, dtype=object), np.array(FEMALE, dtype=object)
    given = np.where((sex == 1)[:, None], male[gm], female[gf])
    name = sur[s, 0] + "　" + given[:, 0]
    kana = sur[s, 1] + "　" + given[:, 1]
    t = rng.integers(0, len(TOWNS), n)
    towns = np.array(TOWNS, dtype=object)
    chome, ban, go = rng.integers(1, 6, n), rng.integers(1, 30, n), rng.integers(1, 25, n)
    flat = rng.random(n) < 0.35
    room = rng.integers(1, 6, n) * 100 + rng.integers(1, 12, n)
    addr = [
        f"東京都架空区{towns[i, 0]}{c}丁目{b}番{g}号" + (f" 架空ハイツ{r}号室" if f else "")
        for i, c, b, g, f, r in zip(t, chome, ban, go, flat, room, strict=True)
    ]
    u = rng.random(n)
    cum = np.cumsum(LANG_P)
    lang = np.where(
        u < cum[-1],
        np.array(LANGS, dtype=object)[np.minimum(np.searchsorted(cum, u), len(LANGS) - 1)],
        "ja",
    )
    return pd.DataFrame(
        {
            "person_id": person_id,
            "name": name,
            "name_kana": kana,
            "postal_code": towns[t, 1],
            "address": addr,
            "language": lang,
            "opt_out": rng.random(n) < 0.02,
        }
    )
