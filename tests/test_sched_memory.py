"""Memory stays bounded as the work grows (issue 15): runs under RLIMIT_AS in a subprocess, the
with-data refusal before any tensor exists, and the trace streamed to disk as events retire."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import resource
import subprocess
import sys
import textwrap

import pytest

from pacim.arch import load_arch
from pacim.errors import PacimError
from pacim.sched import TRACE_COLUMNS, TraceWriter, schedule, schedule_layer, trace
from pacim.workloads import load_workload
from pacim.workloads.ir import Workload, conv_layer, linear_layer, matmul_layer
from pacim.workloads.memory import ENV, available_bytes, check, estimate

GIB = 1 << 30
HUGE_CONV = """\
name: huge
layers:
  - {kind: conv2d, in_shape: [1, 1000000000, 32, 32], out_channels: 64, kernel: 3, padding: 1}
"""


def _limited(limit: int):
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return pre


def _run(args: list[str], limit: int = GIB, env: dict | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=_limited(limit), env=env)


def _timed(call: str, limit: int = GIB) -> dict:
    """Run `call` (Python, sets `rep`) in a fresh process under RLIMIT_AS; its time, inside, and
    its peak resident memory (VmHWM: this address space's own; ru_maxrss would carry over the
    pytest parent's peak through fork and exec)."""
    code = textwrap.dedent(f"""
        import json, time
        from pacim.pipeline import simulate
        t0 = time.perf_counter()
        {call}
        s = rep.summary
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
        print(json.dumps({{"s": time.perf_counter() - t0, "events": s["events"],
                          "cycles": s["cycles"], "rss": int(hwm[0].split()[1]) * 1024}}))
    """)
    r = _run(["-c", code], limit)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_million_token_llm_no_data_under_1gb():
    out = _timed("rep = simulate('pacim_65nm', 'llm-layer', data=False, tokens=10**6)")
    assert out["events"] > 10**8  # every one of them counted, few simulated
    assert out["rss"] < GIB
    r = _run(["-m", "pacim", "simulate", "--arch", "pacim_65nm", "--workload", "llm-layer",
              "--tokens", "1000000", "--no-data", "-q"])
    assert r.returncode == 0, r.stderr[-2000:]


def test_billion_channel_conv_no_data_completes_in_2s(tmp_path):
    """Completes rather than refused: the mapping is a handful of runs of passes and the
    schedule repeats every 9 passes, so the result is exact at the cost of a few passes."""
    y = tmp_path / "huge.yaml"
    y.write_text(HUGE_CONV)
    out = _timed(f"rep = simulate('pacim_65nm', {str(y)!r}, data=False)")
    assert out["s"] < 2.0 and out["rss"] < GIB
    assert out["events"] > 3 * 10**8
    r = _run(["-m", "pacim", "simulate", "--arch", "pacim_65nm", "--workload", str(y),
              "--no-data", "-q"])
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("workload", ["llm-layer", "huge"])
def test_with_data_too_big_is_one_line_exit_2(tmp_path, workload):
    args = ["--tokens", "100000"] if workload == "llm-layer" else []
    if workload == "huge":
        (tmp_path / "huge.yaml").write_text(HUGE_CONV)
        workload = str(tmp_path / "huge.yaml")
    r = _run(["-m", "pacim", "simulate", "--arch", "pacim_65nm", "--workload", workload, *args],
             limit=2 * GIB)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "with data needs about" in lines[0] and "--no-data" in lines[0]


def test_estimate_and_budget(monkeypatch):
    shapes = load_workload("resnet18-cifar", data=False)
    est = estimate(shapes)
    assert est.total > est.tensors > 0 and est.operands > 0 and est.work > 0
    with pytest.raises(PacimError, match="resnet18-cifar with data needs about"):
        check(est, "workload resnet18-cifar", budget=est.total - 1)
    check(est, "workload resnet18-cifar", budget=est.total)
    monkeypatch.setenv(ENV, "64M")
    assert available_bytes() == 64 << 20
    with pytest.raises(PacimError, match="with data needs about"):  # before any tensor
        load_workload("llm-layer", tokens=4096)
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(PacimError, match=ENV):
        available_bytes()


def test_built_workload_checked_before_the_macro_runs(monkeypatch):
    from pacim.pipeline import simulate

    wl = load_workload("resnet18-cifar")
    monkeypatch.setenv(ENV, "1M")
    with pytest.raises(PacimError, match="more"):
        simulate("pacim_65nm", wl)


# --- the trace, streamed --------------------------------------------------------------------

TRACE_WL = Workload("t", (
    conv_layer("c0", (1, 3, 24, 24), 32, 3, 1, 1), conv_layer("c1", (1, 300, 12, 12), 70, 3, 2, 1),
    linear_layer("a", 100, 2000, 128), matmul_layer("qk", 40, 64, 40),
    linear_layer("b", 100, 128, 256)))
# sha256 and rows of the trace the scheduler wrote before it streamed (pacim 1367b2c, events
# kept in memory and written at the end), per arch override
BEFORE = {
    "banks4": ({"macro.banks": 4}, 281,
               "fe96e3f3a6a400b132c6309ad2d14f9e1aed455f15eb00a6cf71466a41abfa05"),
    "main_maps": ({"memory.global_buffer.size_kib": 2, "pac.scope": "bank"}, 228,
                  "770a41a88677aec82490820962b907be749e40c6d54904fc0b33d18120497cba"),
    "default": ({}, 182, "ad49947061922ce118a19a4fd6783eec66c42dbd1fa8a3512b4036ccba9884e5"),
}


@pytest.mark.parametrize("case", list(BEFORE))
def test_streamed_trace_has_the_rows_of_before(tmp_path, case):
    ov, lines, sha = BEFORE[case]
    path = tmp_path / "trace.csv"
    schedule(load_arch("pacim_65nm", ov), TRACE_WL, trace_path=path, cache=False)
    data = path.read_bytes()
    assert data.count(b"\n") == lines and hashlib.sha256(data).hexdigest() == sha


def test_trace_is_written_while_the_schedule_runs(monkeypatch, tmp_path):
    """Rows reach the file in blocks as events retire; what is held stays bounded."""
    writes: list[int] = []
    held: list[int] = []

    class Stream(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s.count("\n"))
            return super().write(s)

    orig = TraceWriter.extend

    def extend(self, rows):  # what the writer holds after each batch of retired events
        orig(self, rows)
        held.append(len(self._rows))

    monkeypatch.setattr(TraceWriter, "extend", extend)
    monkeypatch.setattr(trace, "TRACE_BUFFER", 64)
    arch = load_arch("pacim_65nm")
    la = linear_layer("q", 20000, 1024, 512)
    stream = Stream()
    counts = schedule(arch, Workload("w", (la,)), trace_path=stream, cache=False)
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert tuple(rows[0]) == TRACE_COLUMNS and len(rows) - 1 == counts[0].events
    assert len([w for w in writes if w]) > counts[0].events // 200  # many blocks, not one
    assert max(held) < 64 + 16  # a block plus one batch's events
    direct: list[tuple] = []  # the same rows as a list sink, layer-relative
    schedule_layer(arch, la, trace=direct)
    assert [tuple(str(v) for v in r) for r in direct] == [tuple(r) for r in rows[1:]]


def test_trace_write_error_is_one_pacim_error(tmp_path):
    with pytest.raises(PacimError, match="cannot write trace /dev/full"):
        schedule(load_arch("pacim_65nm"), TRACE_WL, trace_path="/dev/full", cache=False)
    big = conv_layer("big", (1, 3, 100000, 100000), 64, 3, 1, 1)
    path = tmp_path / "t.csv"
    with pytest.raises(PacimError, match="every event traced"):  # refused before the file
        schedule(load_arch("pacim_65nm"), Workload("w", (big,)), trace_path=path)
    assert not path.exists()
