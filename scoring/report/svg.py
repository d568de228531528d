"""Small inline-SVG charts for the HTML (no matplotlib, no external files): histogram
sparklines and reliability diagrams. Coordinates are rounded so the same numbers give the same
bytes. Every chart names the ``font`` family on its ``<svg>`` element (the reader's Japanese
fonts). The PDF draws the same charts natively in Typst (templates/report-style.typ) from the
same numbers (:func:`reliability_points`).
"""

from __future__ import annotations

import numpy as np
from markupsafe import Markup, escape


def _num(x: float) -> str:
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def histogram(counts: np.ndarray, *, width: int = 160, height: int = 28, font: str) -> Markup:
    """Bars of ``counts`` (one path), scaled to the largest bin; x from 0 to 1."""
    counts = np.asarray(counts, dtype=float)
    top = counts.max() if len(counts) and counts.max() > 0 else 1.0
    w = width / max(len(counts), 1)
    h = counts / top * (height - 2)
    x = np.arange(len(counts)) * w
    d = "".join(
        f"M{_num(a)} {height}v-{_num(b)}h{_num(w - 0.6)}v{_num(b)}z"
        for a, b in zip(x, h, strict=True)
        if b > 0
    )
    return Markup(
        f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="{escape(font)}" role="img"><path d="{d}" fill="#4c6ef5"/>'
        f'<path d="M0 {height - 0.5}h{width}" stroke="#999" stroke-width="1"/></svg>'
    )


def reliability_points(
    predicted: np.ndarray, observed: np.ndarray, n: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(axis top, predicted, observed, √(n / max n)) of the bins with both values (the last
    is NaN when every bin is empty).

    The axes run from 0 to the largest value rounded up to 10% (rare outcomes stay readable).
    """
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    k = np.asarray(n, dtype=float)
    ok = ~np.isnan(p) & ~np.isnan(o)
    p, o, k = p[ok], o[ok], k[ok]
    top = float(np.ceil(max(p.max(initial=0), o.max(initial=0), 0.05) * 10 - 1e-9) / 10)
    top = min(max(top, 0.1), 1.0)
    rel = np.sqrt(k / k.max()) if len(k) and k.max() > 0 else np.full(len(k), np.nan)
    return top, p, o, rel


def reliability(
    predicted: np.ndarray,
    observed: np.ndarray,
    n: np.ndarray,
    *,
    title: str,
    side: int = 130,
    font: str,
) -> Markup:
    """Reliability diagram: observed vs mean predicted per bin, the diagonal, dots ∝ √n.

    The axes run from 0 to the largest value rounded up to 10% (rare outcomes stay readable).
    """
    top, p, o, rel = reliability_points(predicted, observed, n)
    m, t, s = 40, 18, side  # left margin, top margin, plot side
    y0 = t + s
    width, height = m + s + 10, y0 + 30

    def X(v):
        return m + np.asarray(v) / top * s

    def Y(v):
        return y0 - np.asarray(v) / top * s

    r = np.where(np.isnan(rel), 0.0, 1.5 + 3.5 * rel)  # no dots when every bin is empty
    pts = "".join(
        f'<circle cx="{_num(a)}" cy="{_num(b)}" r="{_num(c)}"/>'
        for a, b, c in zip(X(p), Y(o), r, strict=True)
    )
    line = " ".join(f"{_num(a)},{_num(b)}" for a, b in zip(X(p), Y(o), strict=True))
    ticks = "".join(
        f'<text x="{_num(X(v))}" y="{y0 + 10}" text-anchor="middle">{100 * v:.0f}%</text>'
        f'<text x="{m - 3}" y="{_num(Y(v) + 3)}" text-anchor="end">{100 * v:.0f}%</text>'
        for v in (0.0, top / 2, top)
    )
    return Markup(
        f'<svg class="rel" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="{escape(font)}" font-size="8" role="img">'
        f'<text x="{m}" y="11" font-size="10">{escape(title)}</text>'
        f'<rect x="{m}" y="{t}" width="{s}" height="{s}" fill="#fafafa" stroke="#bbb"/>'
        f'<path d="M{m} {y0}L{m + s} {t}" stroke="#aaa" stroke-dasharray="3 2"/>'
        + (f'<polyline points="{line}" fill="none" stroke="#1c7ed6"/>' if len(p) else "")
        + f'<g fill="#1c7ed6" fill-opacity="0.8">{pts}</g>{ticks}'
        f'<text x="{m + s / 2:.0f}" y="{y0 + 24}" text-anchor="middle">予測リスク</text>'
        f'<text x="9" y="{t + s / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 9 {t + s / 2:.0f})">実際の発症割合</text></svg>'
    )
