"""Staff explanation report (保健師向け説明資料): HTML + PDF, pseudonyms only."""

from .build import build_report
from .inputs import ReportConfig, ReportInputError, ReportInputs, ReportPaths, ScenarioLabel

__all__ = [
    "ReportConfig",
    "ReportInputError",
    "ReportInputs",
    "ReportPaths",
    "ScenarioLabel",
    "build_report",
]
