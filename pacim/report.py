"""Report: the result of one simulation, as a dict / JSON / per-layer CSV / text table."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PacimError

REPORT_VERSION = 1


def json_safe(v: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples become lists."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return json_safe(v.item())
        except (TypeError, ValueError):
            return v
    return v


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

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """JSON text; written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            write_text(path, text + "\n")
        return text

    def csv_rows(self) -> list[dict[str, Any]]:
        """One flat row per layer (nested dicts flattened with dots)."""
        rows = []
        for la in self.to_dict()["layers"]:
            rows.append(flatten(la))
        return rows

    def to_csv(self, path: str | Path | None = None) -> str:
        """Per-layer CSV (a spreadsheet can open it); written to `path` when given."""
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
            write_text(path, buf.getvalue())
        return buf.getvalue()

    def table(self) -> str:
        """Human-readable per-layer table plus a summary block."""
        return format_table(self.to_dict())


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are JSON-encoded."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def write_text(path: str | Path, text: str) -> None:
    """Write a text file, turning OS errors into one-line PacimErrors."""
    p = Path(path)
    try:
        p.write_text(text)
    except OSError as e:
        raise PacimError(f"{p}: cannot write: {e.strerror or e}") from None


def check_writable(path: str | Path | None) -> None:
    """Fail early (before a long run) if an output path cannot be written."""
    if path is None:
        return
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise PacimError(f"{p}: is a directory, not a file")
    if not parent.is_dir():
        raise PacimError(f"{p}: cannot write: directory {parent} does not exist")
    # checked without creating the file, so a run that fails later leaves nothing behind
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        raise PacimError(f"{p}: cannot write: permission denied")


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_table(d: dict[str, Any]) -> str:
    """Text table of a report dict."""
    cols: list[tuple[str, str]] = [("layer", "name"), ("kind", "kind"), ("MACs", "macs"),
                                   ("dig.cyc", "digital_cycles_mean"),
                                   ("SQNR dB", "accuracy.sqnr_db")]
    layers = [flatten(la) for la in d.get("layers", [])]
    if any("cycles" in la for la in layers):
        cols += [("cycles", "cycles"), ("stalls", "stall_cycles_total")]
    if any("memory.reads_bits" in la for la in layers):
        cols += [("rd Mbit", "memory.reads_mbit"), ("wr Mbit", "memory.writes_mbit")]
    if any("energy_pj" in la for la in layers):
        cols += [("energy uJ", "energy_uj")]
    for la in layers:
        if "memory.reads_bits" in la:
            la["memory.reads_mbit"] = la["memory.reads_bits"] / 1e6
            la["memory.writes_mbit"] = la["memory.writes_bits"] / 1e6
        if "energy_pj" in la and la["energy_pj"] is not None:
            la["energy_uj"] = la["energy_pj"] / 1e6
        if "stall_cycles.total" in la:
            la["stall_cycles_total"] = la["stall_cycles.total"]
        if not la.get("mapped", True):
            la["digital_cycles_mean"] = "not mapped"
    cells = [[_fmt(la.get(key)) for _, key in cols] for la in layers]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, (h, _) in enumerate(cols)]
    lines = ["  ".join(h.ljust(widths[i]) if i < 2 else h.rjust(widths[i])
                       for i, (h, _) in enumerate(cols))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                               for i, c in enumerate(r)))
    lines.append("")
    lines.append(summary_text(d))
    return "\n".join(lines)


def summary_text(d: dict[str, Any]) -> str:
    """The summary block of a report dict."""
    bsc = d.get("bit_serial_cycles") or {}
    red = bsc.get("reduction")
    acc = d.get("accuracy") or {}
    out = [
        f"arch {d.get('arch')}  workload {d.get('workload')}  "
        f"({'data' if d.get('data') else 'no data: shapes + default statistics'})",
        f"MACs {_fmt(d.get('macs'))} (mapped {_fmt(d.get('mapped_macs'))})  "
        f"ops {_fmt(d.get('ops'))}",
        f"bit-serial cycles: baseline {_fmt(bsc.get('baseline'))}  "
        f"actual {_fmt(bsc.get('actual'))}"
        f"  reduction {_fmt(None if red is None else 100 * red)}%",
        f"accuracy vs exact: output RMSE {_fmt(acc.get('output_rmse_vs_exact'))}  "
        f"SQNR {_fmt(acc.get('sqnr_db'))} dB",
    ]
    if "cycles" in d:
        mem = d.get("memory") or {}
        out.append(f"cycles {_fmt(d.get('cycles'))}  latency {_fmt(d.get('latency_s'))} s  "
                   f"throughput {_fmt(d.get('throughput_tops'))} TOPS")
        if mem:
            out.append(f"memory: reads {_fmt(mem.get('reads_bits'))} bit  "
                       f"writes {_fmt(mem.get('writes_bits'))} bit")
    if "energy_pj" in d:
        out.append(f"energy {_fmt(d.get('energy_pj'))} pJ  TOPS/W {_fmt(d.get('tops_per_w'))}  "
                   f"peak TOPS/W {_fmt(d.get('peak_tops_per_w'))}")
    return "\n".join(out)
