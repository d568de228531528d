"""Error types every stage raises (the bottom layer: any package may import them).

The command line (kenshin.errors, kenshin.cli) turns them into exit codes: a
:class:`BadInputError` is exit 2 with its one-line message (docs/contract.md §Exit codes).
"""

from __future__ import annotations

__all__ = ["BadInputError"]


class BadInputError(Exception):
    """A file-level or argument problem: the command stops with exit code 2.

    The message is one line naming the file (and row/column where it helps) and what was expected.
    """
