"""Report: the result of one simulation, as a dict, JSON and a per-layer CSV (spreadsheets)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .export import flatten, json_safe, write_text
from .table import format_table

REPORT_VERSION = 1


@dataclass(frozen=True)
class Report:
    """Whole-workload figures plus one dict per layer (same keys where they apply)."""

    summary: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Stable-keyed dict: summary keys at the top level, plus `layers`."""
        d = dict(self.summary)
        d["layers"] = self.layers
        return json_safe(d)

    def to_json(self, path: str | Path | None = None, indent: int = 2,
                option: str | None = None) -> str | Path:
        """The JSON text; or, given `path`, write it there and return the path."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            return write_text(path, text + "\n", option)
        return text

    def csv_rows(self) -> list[dict[str, Any]]:
        """One flat row per layer (nested dicts flattened with dots)."""
        rows = []
        for la in self.to_dict()["layers"]:
            rows.append(flatten(la))
        return rows

    def to_csv(self, path: str | Path | None = None, option: str | None = None) -> str | Path:
        """Per-layer CSV text (a spreadsheet can open it); or, given `path`, write it there
        and return the path."""
        rows = self.csv_rows()
        keys: list[str] = []
        for r in rows:
            keys.extend(k for k in r if k not in keys)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
        if path is not None:
            return write_text(path, buf.getvalue(), option)
        return buf.getvalue()

    def table(self) -> str:
        """Human-readable per-layer table plus a summary block."""
        return format_table(self.to_dict())
