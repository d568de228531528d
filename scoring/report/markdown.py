"""A tiny Markdown subset for the model card in the HTML report (headings, bullet lists, pipe
tables, paragraphs, ``code`` and **bold**). Everything is escaped first; no raw HTML passes
through."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline(text: str) -> str:
    s = str(escape(text))
    s = _CODE.sub(r"<code>\1</code>", s)
    return _BOLD.sub(r"<strong>\1</strong>", s)


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
