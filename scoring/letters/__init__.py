"""Advice letters: LetterRequest table → one PDF per resident, a print file and a manifest.

The contract with the scoring/selection step is :mod:`scoring.letters.schema`; wording lives in
``catalogue.yaml`` and layout in ``templates/``. See :func:`render_letters`.
"""

from .catalogue import Catalogue, CatalogueError, load_catalogue
from .render import (
    LetterConfig,
    LetterManifest,
    LetterRunner,
    ProcessRunner,
    font_path,
    render_letters,
)
from .schema import LETTER_REQUEST_SCHEMA, LetterRequestError, normalise_requests

__all__ = [
    "LETTER_REQUEST_SCHEMA",
    "Catalogue",
    "CatalogueError",
    "LetterConfig",
    "LetterManifest",
    "LetterRequestError",
    "LetterRunner",
    "ProcessRunner",
    "font_path",
    "load_catalogue",
    "normalise_requests",
    "render_letters",
]
