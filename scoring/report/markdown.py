"""A tiny Markdown subset for the model card (headings, bullet lists, pipe tables, paragraphs,
``code`` and **bold**). Everything is escaped first; no raw HTML passes through."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline(text: str) -> str:
    s = str(escape(text))
    s = _CODE.sub(r"<code>\1</code>", s)
    return _BOLD.sub(r"<strong>\1</strong>", s)


def plain(text: str) -> str:
    """Inline Markdown stripped to text (for excerpts)."""
    return _BOLD.sub(r"\1", _CODE.sub(r"\1", text)).strip()


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def blocks(md: str) -> list[tuple]:
    """The Markdown subset as blocks of raw text: ``("h", level, text)`` (level 1-6),
    ``("p", text)``, ``("ul", [item, …])``, ``("table", [[cell, …], …])`` (first row = header)."""
    out: list[tuple] = []
    para: list[str] = []
    items: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if para:
            out.append(("p", " ".join(para)))
            para.clear()
        if items:
            out.append(("ul", list(items)))
            items.clear()
        if table:
            rows = [_cells(r) for r in table if not re.fullmatch(r"\|?[\s:|-]+\|?", r.strip())]
            if rows:
                out.append(("table", rows))
            table.clear()

    for raw in md.splitlines():
        line = raw.rstrip()
        h = re.match(r"^(#{1,6})\s+(.*)$", line)
        if h:
            flush()
            out.append(("h", len(h.group(1)), h.group(2)))
        elif line.lstrip().startswith("|"):
            if para or items:
                flush()
            table.append(line)
        elif re.match(r"^\s*[-*]\s+", line):
            if para or table:
                flush()
            items.append(re.sub(r"^\s*[-*]\s+", "", line))
        elif not line.strip():
            flush()
        elif items and raw.startswith(("  ", "\t")):
            items[-1] += " " + line.strip()
        else:
            if items or table:
                flush()
            para.append(line.strip())
    flush()
    return out


def spans(text: str) -> list[tuple[str, str]]:
    """Inline Markdown as (kind, text) runs: kind "" (plain), "code" or "strong"."""
    out: list[tuple[str, str]] = []
    for i, part in enumerate(_CODE.split(text)):
        if i % 2:
            out.append(("code", part))
            continue
        for j, bit in enumerate(_BOLD.split(part)):
            if bit:
                out.append(("strong" if j % 2 else "", bit))
    return out


def render(md: str) -> Markup:
    """HTML of the Markdown subset; headings start at <h4>."""
    out: list[str] = []
    for b in blocks(md):
        if b[0] == "h":
            level = min(b[1] + 3, 6)
            out.append(f"<h{level}>{inline(b[2])}</h{level}>")
        elif b[0] == "p":
            out.append(f"<p>{inline(b[1])}</p>")
        elif b[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b[1]) + "</ul>")
        else:
            rows = b[1]
            head = "".join(f"<th>{inline(c)}</th>" for c in rows[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
            )
            out.append(f'<table class="md"><tr>{head}</tr>{body}</table>')
    return Markup("\n".join(out))


def section(md: str, *names: str) -> list[str]:
    """Lines of the first section whose heading contains one of ``names`` (case-insensitive)."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        h = re.match(r"^(#{1,6})\s+(.*)$", line)
        if h and any(n.lower() in h.group(2).lower() for n in names):
            depth = len(h.group(1))
            body = []
            for nxt in lines[i + 1 :]:
                h2 = re.match(r"^(#{1,6})\s+", nxt)
                if h2 and len(h2.group(1)) <= depth:
                    break
                body.append(nxt)
            return body
    return []


def bullets(lines: list[str]) -> list[str]:
    """Bullet items of ``lines`` (continuation lines joined), inline Markdown stripped."""
    items: list[str] = []
    for line in lines:
        if re.match(r"^\s*[-*]\s+", line):
            items.append(re.sub(r"^\s*[-*]\s+", "", line))
        elif items and line.strip() and line.startswith(("  ", "\t")):
            items[-1] += " " + line.strip()
    return [plain(i) for i in items]


def first_paragraph(lines: list[str]) -> str:
    para: list[str] = []
    for line in lines:
        if not line.strip():
            if para:
                break
            continue
        if line.lstrip().startswith(("|", "-", "*", "#")):
            if para:
                break
            continue
        para.append(line.strip())
    return plain(" ".join(para))
