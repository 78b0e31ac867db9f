"""Result regression: key figures of fixed runs vs benchmarks/expected.json, with tolerances.

An intended change of a figure updates expected.json in the same commit
(`python -m benchmarks --only results --update-expected`), with the reason in the message.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from benchmarks.common import BenchResult, Check
from pacim.arch import load_arch
from pacim.pipeline import simulate
from pacim.workloads import load_workload

EXPECTED = Path(__file__).resolve().parent / "expected.json"

# (workload, workload options, arch)
KEY_RUNS: list[tuple[str, dict[str, Any], str]] = [
    (wl, {}, arch)
    for wl in ("resnet18", "resnet18-cifar")
    for arch in ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm")
] + [("llm-layer", {"tokens": 32}, arch) for arch in ("pacim_65nm", "dcim_65nm")]

FIGURES = (
    "cycles",
    "memory.reads_bits",
    "memory.writes_bits",
    "energy_pj",
    "tops_per_w",
    "peak_tops_per_w",
    "bit_serial_cycles.reduction",
    "digital_cycles_mean",
    "accuracy.sqnr_db",
    "area_mm2",
    "tops_per_mm2",
)

# Relative tolerance per figure. Counts and energies are deterministic functions of the integer
# macro's statistics; the 1e-6 slack only absorbs float summation order. Data-dependent figures
# (dynamic levels, SQNR) can move by a hair when a BLAS build rounds the float forward pass
# differently, flipping a rare quantization code: 1e-3 relative.
TOLERANCE = {
    "cycles": 1e-3,
    "memory.reads_bits": 1e-6,
    "memory.writes_bits": 1e-6,
    "energy_pj": 1e-3,
    "tops_per_w": 1e-3,
    "peak_tops_per_w": 1e-3,
    "bit_serial_cycles.reduction": 1e-3,
    "digital_cycles_mean": 1e-3,
    "accuracy.sqnr_db": 1e-3,
    "area_mm2": 1e-9,  # geometry x table: no data dependence
    "tops_per_mm2": 1e-3,  # follows throughput, hence cycles
}


def run_key(workload: str, options: dict[str, Any], arch: str) -> str:
    """Stable key of a run."""
    opts = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{workload}[{opts}]@{arch}" if opts else f"{workload}@{arch}"


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def key_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The regression figures of one report dict."""
    return {f: _get(report, f) for f in FIGURES}


def compute(runs: list[tuple[str, dict[str, Any], str]] = KEY_RUNS, seed: int = 0
            ) -> dict[str, dict[str, Any]]:
    """Figures of every key run (workloads built once per workload)."""
    out: dict[str, dict[str, Any]] = {}
    cache: dict[str, Any] = {}
    for wl_name, opts, arch_name in runs:
        ck = run_key(wl_name, opts, "")
        if ck not in cache:
            cache.clear()  # keep one workload's tensors in memory at a time
            cache[ck] = load_workload(wl_name, seed=seed, **opts)
        rep = simulate(load_arch(arch_name), cache[ck], data=True).to_dict()
        out[run_key(wl_name, opts, arch_name)] = key_figures(rep)
    return out


def compare(current: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
            ) -> list[Check]:
    """One check per (run, figure): relative deviation <= tolerance."""
    checks = []
    for run, figs in expected.items():
        cur = current.get(run)
        for fig, exp in figs.items():
            val = None if cur is None else cur.get(fig)
            tol = TOLERANCE.get(fig, 1e-6)
            if exp is None or val is None:
                dev = 0.0 if exp is None and val is None else math.inf
            else:
                dev = abs(val - exp) / max(abs(exp), 1e-12)
            checks.append(Check(f"{run} {fig} (rel. deviation)", dev, "<=", tol))
    return checks


def run(quick: bool = False) -> BenchResult:
    """Compute the key figures and compare them with expected.json."""
    current = compute()
    res = BenchResult("results_regression", figures={"runs": current})
    if os.environ.get("PACIM_UPDATE_EXPECTED") == "1" or not EXPECTED.is_file():
        EXPECTED.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        print(f"  wrote {EXPECTED}")
    expected = json.loads(EXPECTED.read_text())
    checks = compare(current, expected)
    bad = [c for c in checks if not c.ok]
    for c in bad:
        print(c.line())
    res.figures["figures_compared"] = len(checks)
    res.checks = [Check("figures beyond tolerance", len(bad), "<=", 0),
                  Check("runs covered", len(current), ">=", len(expected))]
    return res
