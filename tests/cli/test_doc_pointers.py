"""Every pointer from the code to the project's documents resolves.

Docstrings, comments and messages say where a rule is written down as ``docs/contract.md
§Checkups`` (several sections: ``docs/contract.md §Checkups, §Enrollment``). Each named section
must be a heading of that file, so a renamed section cannot leave pointers to nowhere; and no
file may point to a document outside the repository (the old ``spec §…`` / ``domain.md §…``
notes).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("contract", "domain", "architecture", "models")
SKIP_DIRS = {".venv", ".tools", ".git", "work", "node_modules", "__pycache__"}
POINTER = re.compile(
    r"docs/(contract|domain|architecture|models)\.md"  # the document
    r"((?:[ ,]*(?:and )?§[^,.;:)\]\n`]+)+)"  # one or more §Section, up to punctuation
)
OUTSIDE = re.compile(r"\bspec ?§|(?<!docs/)\bdomain\.md|CALIBRATION_SOURCES|shared/notes/")


def _files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".toml", ".yaml") or not path.is_file():
            continue
        rel = path.relative_to(ROOT)
        if SKIP_DIRS & set(rel.parts) or rel.parts[0] == "docs" or path == Path(__file__):
            continue
        out.append(path)
    return out


def _headings(name: str) -> set[str]:
    text = (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8")
    return {m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", text, re.MULTILINE)}


def _resolves(section: str, headings: set[str]) -> bool:
    """The pointer names a heading (followed, in running text, by more words)."""
    return any(section == h or section.startswith(h + " ") for h in headings)


def test_the_documents_exist():
    for name in DOCS:
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
    assert (ROOT / "bench" / "README.md").is_file()


def test_every_section_pointer_names_a_heading():
    headings = {name: _headings(name) for name in DOCS}
    broken, seen = [], 0
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in POINTER.finditer(text):
            for section in re.findall(r"§([^§]+)", m.group(2)):
                section = section.strip(" ,").removeprefix("and ").strip()
                seen += 1
                if not _resolves(section, headings[m.group(1)]):
                    line = text.count("\n", 0, m.start()) + 1
                    broken.append(
                        f"{path.relative_to(ROOT)}:{line}: docs/{m.group(1)}.md §{section}"
                    )
    assert seen > 50, "the pointer pattern no longer finds the code's pointers"
    assert not broken, "pointers to missing sections:\n" + "\n".join(broken)


def test_no_pointer_leaves_the_repository():
    found = []
    for path in _files():
        for i, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
        ):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "pointers to documents outside the repository:\n" + "\n".join(found)
