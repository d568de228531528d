"""Errors that end a command with exit code 2 and a one-line reason (spec §4)."""

from __future__ import annotations


class BadInputError(Exception):
    """A file-level or argument problem: the command stops with exit code 2.

    The message is one line naming the file (and row/column where it helps) and what was expected.
    """
