"""The report of a simulation: Report (dict / JSON / CSV), the text table, and its figures.

`pacim.report.plots` (matplotlib) is imported only when a figure is drawn.
"""

from .core import REPORT_VERSION, Report
from .export import (
    check_outputs,
    check_writable,
    flatten,
    image_format,
    json_safe,
    write_bytes,
    write_text,
)
from .table import format_table, summary_text

__all__ = [
    "REPORT_VERSION",
    "Report",
    "check_outputs",
    "check_writable",
    "flatten",
    "format_table",
    "image_format",
    "json_safe",
    "summary_text",
    "write_bytes",
    "write_text",
]
