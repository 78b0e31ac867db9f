"""Property tests: random arch overrides and random workload YAML into `simulate --no-data`.

Whatever the input, the simulator either succeeds with finite, positive headline figures or
raises PacimError: never another exception, never inf/NaN or a zero TOPS/W. Sizes stay moderate
(the memory bound of huge shapes is tested with the scheduler).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pacim.arch import load_arch
from pacim.cli import main
from pacim.errors import PacimError
from pacim.pipeline import simulate
from pacim.workloads import load_workload

ROOT = Path(__file__).resolve().parent.parent
BASE = load_arch("pacim_65nm")
BASES = [BASE, load_arch("dcim_65nm"), load_arch("jia_bpbs_65nm")]  # every shipped chip
WORKLOAD = load_workload(ROOT / "workloads/tiny_cnn.yaml", data=False)


def _leaves(d: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _leaf_values(d: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for v in d.values():
        out += _leaf_values(v) if isinstance(v, dict) else [v]
    return out


KEYS = sorted({k for b in BASES for k in _leaves(b.to_dict())}
              | {"pac.dynamic", "energy.full_adder", "memory.main", "area.bitcell", "pac.bogus",
                 "technology.vdd.x", "macro"})
SPECIAL = [None, True, False, "x", "", [], [1, 2, 3], [3, 2, 1], {"a": 1}, 0, -1, 0.0, -0.0,
           1e-300, 1e300, math.inf, -math.inf, math.nan, 2**63, "bit_serial", "bp_bs", "bank",
           "truncate", "expected"]
VALUES = st.one_of(
    st.integers(-4, 600),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(0.01, 4.0),
    st.sampled_from(SPECIAL),
)
_LEAF = {k: v for b in BASES for k, v in zip(_leaves(b.to_dict()), _leaf_values(b.to_dict()),
                                              strict=True)}


def _plausible(key: str) -> st.SearchStrategy[Any]:
    """Values near the shipped one (most of them valid), so runs get past validation too."""
    v = _LEAF.get(key)
    if isinstance(v, bool):
        return st.booleans()
    if isinstance(v, int):
        return st.integers(1, max(2 * v, 8))
    if isinstance(v, float):
        return st.floats(0.25 * v, 4.0 * v) if v > 0 else st.floats(0.0, 1.0)
    if isinstance(v, list):
        return st.lists(st.floats(0.0, 20000.0), min_size=3, max_size=3).map(sorted)
    if isinstance(v, str):
        return st.text(max_size=8)
    return VALUES


ENTRY = st.sampled_from(KEYS).flatmap(
    lambda k: st.tuples(st.just(k), st.one_of(*[_plausible(k)] * 4, VALUES)))
OVERRIDES = st.lists(ENTRY, max_size=4).map(dict)


def _check_report(rep: Any) -> None:
    """Headline figures of a successful run are finite and positive."""
    d = rep.to_dict()
    for key in ("cycles", "latency_s", "energy_pj", "tops_per_w", "throughput_tops"):
        v = d.get(key)
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (key, v)
    assert abs(sum(d["energy_breakdown_pj"].values()) - d["energy_pj"]) <= 1e-6 * d["energy_pj"]
    if d.get("area_mm2") is not None:  # the area table's figures too
        for key in ("area_mm2", "tops_per_mm2", "peak_tops_per_mm2"):
            v = d.get(key)
            assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (key, v)
        total = sum(d["area_breakdown_mm2"].values())
        assert abs(total - d["area_mm2"]) <= 1e-9 * d["area_mm2"]


@pytest.mark.filterwarnings("error")  # an overflow or NaN cast is a silent wrong answer
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OVERRIDES)
@example({"pac.engine_ops_per_cycle": 1e-300})  # found by this test: a NaN cycle count
@example({"technology.vth": 0.0, "technology.vdd": 1e-300, "technology.vdd_nom": 1e-300})
@example({"technology.vdd": 0.5000000001})  # a clock of 1e-14 MHz
@example({"technology.freq_mhz": math.inf})
@example({"energy.full_adder.value": math.inf})
@example({"technology.vdd": math.nan})
@example({"area.bank_scale.value": 1e-300, "area.node_nm": 1e4})  # a die of ~0 mm^2
@example({"area.periphery_overhead.value": 0.0, "technology.node_nm": 0.1})
def test_random_arch_overrides_succeed_or_raise_pacim_error(ov: dict[str, Any]) -> None:
    for base in BASES:
        _simulate_or_pacim_error(base, ov)


def _simulate_or_pacim_error(base: Any, ov: dict[str, Any]) -> None:
    try:
        arch = base.with_overrides(ov)
        rep = simulate(arch, WORKLOAD, data=False)
    except PacimError:
        return
    _check_report(rep)


GOOD = st.integers(1, 48)
SIZE = st.one_of(GOOD, GOOD, GOOD, GOOD, GOOD, st.sampled_from([0, -1, 1.5, "3", None, True]))


@st.composite
def valid_layer(draw: st.DrawFn) -> dict[str, Any]:
    """A layer entry the loader accepts (moderate sizes)."""
    kind = draw(st.sampled_from(["conv2d", "linear", "matmul"]))
    if kind == "conv2d":
        b, c, h, w = draw(st.integers(1, 2)), draw(GOOD), draw(GOOD), draw(GOOD)
        pad = draw(st.integers(0, 2))
        k = draw(st.integers(1, min(7, h + 2 * pad, w + 2 * pad)))
        return {"kind": kind, "in_shape": [b, c, h, w], "out_channels": draw(GOOD),
                "kernel": k, "stride": draw(st.integers(1, 3)), "padding": pad,
                "exact": draw(st.booleans())}
    if kind == "linear":
        return {"kind": kind, "rows": draw(GOOD), "in_features": draw(st.integers(1, 600)),
                "out_features": draw(st.integers(1, 300))}
    return {"kind": kind, "rows": draw(GOOD), "n": draw(GOOD), "k": draw(GOOD),
            "count": draw(st.integers(1, 4))}


@st.composite
def wild_layer(draw: st.DrawFn) -> dict[str, Any]:
    """A layer entry with any of: a bad kind, bad sizes, a missing or an unknown key."""
    kind = draw(st.sampled_from(["conv2d", "linear", "matmul", "pool", None]))
    if kind == "conv2d":
        e: dict[str, Any] = {
            "in_shape": draw(st.lists(SIZE, min_size=3, max_size=5)),
            "out_channels": draw(SIZE),
            "kernel": draw(st.one_of(SIZE, st.lists(SIZE, min_size=1, max_size=3))),
        }
        if draw(st.booleans()):
            e["stride"] = draw(SIZE)
        if draw(st.booleans()):
            e["padding"] = draw(st.one_of(st.integers(-1, 4), SIZE))
    elif kind == "linear":
        e = {"rows": draw(SIZE), "in_features": draw(SIZE), "out_features": draw(SIZE)}
    else:
        e = {"rows": draw(SIZE), "n": draw(SIZE), "k": draw(SIZE)}
        if draw(st.booleans()):
            e["count"] = draw(SIZE)
    if kind is not None:
        e["kind"] = kind
    if draw(st.booleans()):
        e[draw(st.sampled_from(["colour", "exact", "name"]))] = draw(VALUES)
    if draw(st.booleans()):
        e.pop(draw(st.sampled_from(sorted(e))), None)
    return e


layer_entry = st.one_of(valid_layer(), valid_layer(), valid_layer(), wild_layer())


@st.composite
def workload_doc(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([None, [], "text", 3, {"builtin": "nope"},
                                     {"builtin": "llm-layer", "tokens": 0},
                                     {"builtin": "resnet18-cifar", "seed": -1}]))
    doc: dict[str, Any] = {"layers": draw(st.lists(layer_entry, min_size=int(
        draw(st.integers(0, 9)) > 0), max_size=4))}
    if draw(st.booleans()):
        doc["seed"] = draw(st.one_of(st.integers(0, 5), st.integers(0, 5), SIZE))
    if draw(st.integers(0, 9)) == 0:
        doc["data"] = draw(st.sampled_from(["random", "none", "yes", 1]))
    return doc


@pytest.mark.filterwarnings("error")  # an overflow or NaN cast is a silent wrong answer
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workload_doc(), OVERRIDES)
def test_random_workload_yaml_succeeds_or_raises_pacim_error(doc: Any, ov: dict[str, Any]
                                                             ) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.yaml"
        path.write_text(yaml.safe_dump(doc))
        try:
            wl = load_workload(path, data=False)
            rep = simulate(BASE.with_overrides(ov), wl, data=False)
        except PacimError:
            return
    if wl.mapped_macs:
        _check_report(rep)


# --- the same through the command line: `--set KEY=TEXT`, text as a user types it -------------
TEXT = st.one_of(
    st.sampled_from([".inf", "-.inf", ".nan", "inf", "nan", "0", "-1", "1e-300", "1e300", "null",
                     "[1, 2]", "{a: 1}", "true", "", "x", "'3'", "0x10", "1_000", "2**63"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-10, 1000).map(str),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
)
SET = st.tuples(st.sampled_from(KEYS), TEXT).map(lambda kv: f"{kv[0]}={kv[1]}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SET, max_size=3), st.one_of(st.none(), workload_doc()))
@example(["technology.freq_mhz=.inf"], None)
@example(["area.full_adder.value=.inf", "energy.full_adder.value=1e-300"], None)
def test_cli_simulate_no_data_exits_0_or_2_with_one_line(sets: list[str], doc: Any) -> None:
    """`pacim simulate --no-data` on random --set text and workload YAML: exit 0 with a
    summary, or exit 2 with one line `error: ...`; never a traceback (exit 1)."""
    with tempfile.TemporaryDirectory() as d:
        workload = str(ROOT / "workloads/tiny_cnn.yaml")
        if doc is not None:
            workload = str(Path(d) / "w.yaml")
            Path(workload).write_text(yaml.safe_dump(doc))
        args = ["simulate", "--arch", "pacim_65nm", "--workload", workload, "--no-data", "-q"]
        for item in sets:
            args += ["--set", item]
        r = CliRunner().invoke(main, args)
    assert r.exit_code in (0, 2), (args, r.exit_code, r.exception, r.output)
    if r.exit_code == 2:
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.output)
    else:
        assert "TOPS/W" in r.output, r.output
