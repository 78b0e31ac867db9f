"""Run pacim's benchmarks: `python -m benchmarks [--quick] [--only NAME ...] [--report]`.

Every benchmark returns figures and checks; speed checks are ratios measured in the same run,
result checks compare fixed runs with benchmarks/expected.json. Writes benchmarks/results.json,
prints a table, exits 1 when any check fails. `--report` also writes docs/RESULTS.md; `--with
FILE` adds the benchmarks of an earlier full run (its results.json) that this run skips.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

HERE = Path(__file__).resolve().parent
# (module, in --quick): order = cheap first
BENCHES = [
    ("bench_macro", True),
    ("bench_simulate", True),
    ("bench_sched", True),
    ("bench_energy", True),
    ("bench_area", True),
    ("bench_results", True),
    ("bench_error", True),
    ("bench_sweep", True),
    ("bench_accuracy", True),
    ("bench_analog", True),  # speed in --quick; the sweeps and the data study in the full run
    ("bench_fashion", True),  # quick: the speed ratio only; full: the table, hardware, thresholds
    ("bench_phase", True),  # quick: the decode speed ratio and exactness; full: the table, sweep
    ("bench_analog_accuracy", False),  # full only: trained 8/4/1-bit networks on the ADC
    ("bench_llm", False),
]


def _available() -> list[tuple[str, bool]]:
    return [(m, q) for m, q in BENCHES if (HERE / f"{m}.py").is_file()]


def _earlier_runs(paths: list[str]) -> dict[str, dict]:
    """Benchmarks' results from earlier full runs (later files win); quick ones are refused."""
    out: dict[str, dict] = {}
    for p in paths:
        try:
            runs = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: --with {p}: cannot read benchmark results: {e}") from None
        for name, r in runs.items():
            if r.get("quick", True):
                raise SystemExit(f"error: --with {p}: {name} comes from a --quick run (or one "
                                 "that does not say): a report needs full runs")
            out[name] = r
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the CI subset (< 3 min)")
    ap.add_argument("--only", nargs="*", default=None, help="benchmark module names")
    ap.add_argument("--report", action="store_true", help="also write docs/RESULTS.md")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--with", dest="with_runs", action="append", default=[], metavar="FILE",
                    help="results.json of an earlier full run (its --out): its benchmarks "
                    "that this run does not repeat join the results and the report")
    ap.add_argument("--update-expected", action="store_true",
                    help="rewrite benchmarks/expected.json from this run (intended changes)")
    args = ap.parse_args(argv)
    if args.update_expected:
        os.environ["PACIM_UPDATE_EXPECTED"] = "1"

    from benchmarks.common import BenchResult, Check

    results: dict[str, dict] = {}
    earlier = _earlier_runs(args.with_runs)
    ok = True
    t_all = time.perf_counter()
    for mod_name, in_quick in _available():
        if args.only is not None and mod_name not in args.only and \
                mod_name.removeprefix("bench_") not in args.only:
            continue
        if args.quick and not in_quick:
            continue
        t0 = time.perf_counter()
        print(f"== {mod_name}", flush=True)
        try:
            mod = importlib.import_module(f"benchmarks.{mod_name}")
            res: BenchResult = mod.run(quick=args.quick)
        except Exception as e:  # a crashing benchmark is a failed check, not a lost run
            traceback.print_exc()
            res = BenchResult(mod_name, {"error": repr(e)}, [Check("ran", 0.0, ">=", 1.0)])
        dt = time.perf_counter() - t0
        for k, v in res.figures.items():
            if not isinstance(v, (dict, list)):
                print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
        for c in res.checks:
            print(c.line())
        print(f"  ({dt:.1f} s)", flush=True)
        ok &= res.ok
        results[res.name] = {
            "figures": res.figures,
            "checks": [dict(name=c.name, value=c.value, op=c.op, limit=c.limit, ok=c.ok)
                       for c in res.checks],
            "seconds": dt,
            "quick": args.quick,
        }
    for name, r in earlier.items():
        results.setdefault(name, r)
    Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    if args.report:
        from benchmarks.report import write_results_md

        path = write_results_md(results)
        print(f"wrote {path}")
    n_fail = sum(not c["ok"] for r in results.values() for c in r["checks"])
    n_pass = sum(c["ok"] for r in results.values() for c in r["checks"])
    print(f"benchmarks: {n_pass} checks passed, {n_fail} failed "
          f"({time.perf_counter() - t_all:.0f} s); results in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
