"""Sweeps: grid expansion, records, invalid points, resume after kill/Ctrl-C, Dask, plots."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import pacim
from pacim.arch import load_arch
from pacim.cli.sweep import plot_command, sweep_command
from pacim.errors import PacimError
from pacim.sweeps import (
    SerialExecutor,
    Store,
    cached_workload,
    expand_grid,
    local_executor,
    make_points,
    pareto_front,
    parse_grid_option,
    read_records,
    split_values,
    sweep,
)

ROOT = Path(__file__).resolve().parent.parent
WL = "resnet18-cifar"
BASE = {"pac.dynamic": None}  # operands other than 4 need dynamic configuration off
GRID = {"pac.operand": [2, 3, 4, 9], "macro.banks": [4, 16]}  # operand 9 > 8 bits: invalid


def _arch() -> Any:
    return load_arch("pacim_65nm", BASE)


def _strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without their only non-deterministic field, the simulate wall time."""
    return [{k: v for k, v in r.items() if k != "sim_s"} for r in records]


def _by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stripped records by key (the JSONL holds them in completion order)."""
    return {r["key"]: r for r in _strip(records)}


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The reference: the small grid run in-process, written to a JSONL."""
    out = tmp_path_factory.mktemp("serial") / "serial.jsonl"
    recs = sweep(_arch(), GRID, [WL], data=False, executor=SerialExecutor(), out=out)
    return out, recs


# --- pure pieces --------------------------------------------------------------------------
def test_grid_expansion_and_parsing() -> None:
    pts = expand_grid({"a.b": [1, 2], "c": ["x", "y", "z"]})
    assert len(pts) == 6 and pts[0] == {"a.b": 1, "c": "x"} and pts[-1] == {"a.b": 2, "c": "z"}
    assert expand_grid([{"a": 1}, {}]) == [{"a": 1}, {}]
    with pytest.raises(PacimError, match="list of values"):
        expand_grid({"a": 3})
    with pytest.raises(PacimError, match="empty"):
        expand_grid({"a": []})
    assert split_values("1, 2,[3, 4],{a: 1, b: 2},'x,y'") == [
        "1", "2", "[3, 4]", "{a: 1, b: 2}", "'x,y'"]
    assert parse_grid_option("pac.dynamic.thresholds=[1,2,3],null") == (
        "pac.dynamic.thresholds", [[1, 2, 3], None])
    assert parse_grid_option("technology.vdd=0.9,1.0") == ("technology.vdd", [0.9, 1.0])
    for bad in ("novalue", "=1,2", "a=1,,2"):
        with pytest.raises(PacimError):
            parse_grid_option(bad)


def test_pareto_front() -> None:
    pts = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.5, 3.0), (1.0, 6.0)]
    assert pareto_front(pts) == [0, 1, 3]
    assert pareto_front(pts, maximize=(True, True)) == [3, 2, 5]
    assert pareto_front([]) == []


def test_keys_hash_the_full_config_and_tasks_carry_no_tensors() -> None:
    arch = _arch()
    a = make_points(arch, [{"pac.operand": 3}, {"pac.operand": 3.0}, {}], [WL], False, 0)
    assert a[0].key == a[1].key  # same resolved config, same key
    assert a[0].key != a[2].key
    assert make_points(arch, [{}], [WL], True, 0)[0].key != a[2].key  # data is in the key
    assert make_points(arch, [{}], [WL], False, 1)[0].key != a[2].key  # so is the seed
    task = a[0].task
    assert task is not None and set(task) == {"key", "arch", "overrides", "workload", "data",
                                              "seed"}
    assert len(pickle.dumps(task)) < 8000  # names + overrides + arch dict, never tensors


# --- the real pipeline --------------------------------------------------------------------
def test_serial_records_invalid_points_and_jsonl(
    serial: tuple[Path, list[dict[str, Any]]],
) -> None:
    out, recs = serial
    assert len(recs) == 8
    assert [r["overrides"] for r in recs] == expand_grid(GRID)
    bad = [r for r in recs if r["status"] != "ok"]
    assert len(bad) == 2 and all(r["pac.operand"] == 9 for r in bad)
    assert all("pac.operand" in r["error"] and "exceeds" in r["error"] for r in bad)
    ok = [r for r in recs if r["status"] == "ok"]
    for r in ok:
        assert r["workload"] == WL and r["arch"] == "pacim_65nm" and r["error"] is None
        assert r["macs"] > 0 and r["bit_serial_cycles"] > 0
        assert 0 <= r["bit_serial_reduction"] < 1
        assert r["sqnr_db"] is None  # no data, no accuracy
        for k in ("cycles", "latency_s", "energy_pj", "tops_per_w", "reads_bits"):
            assert isinstance(r.get(k), (int, float)) and r[k] > 0, k
    by = {(r["pac.operand"], r["macro.banks"]): r for r in ok}
    assert by[(2, 16)]["bit_serial_cycles"] < by[(4, 16)]["bit_serial_cycles"]
    assert by[(4, 16)]["cycles"] < by[(4, 4)]["cycles"]  # more banks, fewer cycles
    on_disk = read_records(out)
    assert len(on_disk) == 8 and len({r["key"] for r in on_disk}) == 8
    assert sorted(on_disk, key=lambda r: r["key"]) == sorted(recs, key=lambda r: r["key"])
    # a re-run resumes: nothing is simulated again; the public pacim.sweep is the function
    assert callable(pacim.sweep) and not isinstance(pacim.sweep, types.ModuleType)
    again = pacim.sweep(_arch(), GRID, [WL], data=False, executor=_NoRun(), out=out)
    assert again == recs and len(read_records(out)) == 8


def test_records_are_json_lines(serial: tuple[Path, list[dict[str, Any]]]) -> None:
    for line in serial[0].read_text().splitlines():
        rec = json.loads(line)
        assert rec["status"] in ("ok", "error") and len(rec["key"]) == 20

def test_dask_local_cluster_equals_serial(serial: tuple[Path, list[dict[str, Any]]]) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        recs = sweep(_arch(), GRID, [WL], data=False, executor=client)
        pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2
    assert _strip(recs) == _strip(serial[1])


def test_local_pool_equals_serial_and_builds_each_workload_once(
    serial: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
) -> None:
    ex = local_executor(2)
    try:
        recs = sweep(_arch(), GRID, [WL], data=False, executor=ex)
        cached = [ex.submit(_cache_keys).result() for _ in range(4)]
    finally:
        ex.shutdown()
    assert _strip(recs) == _strip(serial[1])
    assert all(c == [(WL, False, 0)] for c in cached)


def test_ctrl_c_then_resume_one_record_per_point(
    serial: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
) -> None:
    out = tmp_path / "s.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sweep(_arch(), GRID, [WL], data=False, executor=_InterruptAfter(3), out=out)
    before = read_records(out)
    assert 2 <= len(before) < 8  # invalid points + the finished ones; the in-flight one lost
    with open(out, "a") as f:  # a record torn by a kill mid-write
        f.write('{"key": "abc", "status": "o')
    recs = sweep(_arch(), GRID, [WL], data=False, executor=SerialExecutor(), out=out)
    after = read_records(out)
    assert len(after) == 8 and len({r["key"] for r in after}) == 8
    assert after[: len(before)] == before  # finished points were kept, not re-run
    assert _strip(recs) == _strip(serial[1])
    assert out.read_text().endswith("}\n")
    sweep(_arch(), GRID, [WL], data=False, executor=SerialExecutor(), out=out, resume=False)
    assert len(read_records(out)) == 8  # a fresh sweep replaces the file


def test_killed_worker_loses_only_in_flight_points(tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    grid = {"pac.operand": [2, 2, 3, 4], "macro.banks": [4, 8, 16]}
    ex = local_executor(1)
    with pytest.raises(PacimError, match="run again to resume"):
        sweep(_arch(), grid, [WL], data=False, executor=ex, out=out, _simulate=_die_on_operand_3)
    ex.shutdown(wait=False)
    before = read_records(out)
    assert {r["pac.operand"] for r in before} == {2} and len(before) == 3
    sweep(_arch(), grid, [WL], data=False, executor=SerialExecutor(), out=out)
    after = read_records(out)
    assert len(after) == 9 and len({r["key"] for r in after}) == 9  # duplicated points run once


def test_sigkilled_cli_sweep_resumes(tmp_path: Path) -> None:
    """kill -9 of a sweep and its worker mid-run; the resume right after it is not refused
    (the worker never held the lock) and completes the file. 32 points: under load the poll
    below may lag, and the sweep must still be running when it is killed."""
    out = tmp_path / "k.jsonl"
    grid = ["--grid", "pac.operand=1,2,3,4,5,6,7,8", "--grid", "macro.banks=4,8,16,32"]
    args = ["--arch", "pacim_65nm", "--workload", WL, "--no-data", "--set", "pac.dynamic=null",
            *grid, "--out", str(out), "--workers", "1"]
    code = "from pacim.cli.sweep import sweep_command; sweep_command()"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 60:
        if out.exists() and out.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, mid-run
    proc.wait()
    assert killed, f"the sweep ended before it could be killed: {proc.stderr.read()!r}"
    before = read_records(out)
    assert 3 <= len(before) < 32
    ov = dict(parse_grid_option(g) for g in grid[1::2])
    recs = sweep(_arch(), ov, [WL], data=False, executor=SerialExecutor(), out=out)
    after = read_records(out)
    assert len(recs) == len(after) == 32 and len({r["key"] for r in after}) == 32
    assert after[: len(before)] == before


# --- CLI and plots ------------------------------------------------------------------------
def test_cli_sweep_and_plots(tmp_path: Path, serial: tuple[Path, list[dict[str, Any]]]) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.jsonl"
    res = runner.invoke(sweep_command, [
        "--arch", "pacim_65nm", "--set", "pac.dynamic=null", "--workload", WL, "--no-data",
        "--grid", "pac.operand=2,3,4,9", "--grid", "macro.banks=4,16", "--out", str(out),
        "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "8 points (6 ok, 2 failed)" in res.output
    assert _by_key(read_records(out)) == _by_key(serial[1])

    png = tmp_path / "pareto.png"
    res = runner.invoke(plot_command, [str(out), "--x", "latency_s", "--y", "energy_pj",
                                       "--color", "pac.operand", "--pareto", "-o", str(png)])
    assert res.exit_code == 0, res.output
    assert "6 points" in res.output and "Pareto front" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = runner.invoke(plot_command, [str(out), "--x", "nope", "-o", str(png)])
    assert isinstance(res.exception, PacimError) and "numeric fields" in str(res.exception)

    from pacim.pipeline import simulate

    report = tmp_path / "r.json"
    simulate(_arch(), cached_workload(WL, False, 0), data=False).to_json(report)
    png2 = tmp_path / "layers.png"
    res = runner.invoke(plot_command, [str(report), "-o", str(png2)])
    assert res.exit_code == 0, res.output
    assert png2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    base = ["--arch", "pacim_65nm", "--workload", WL, "--out", str(tmp_path / "o.jsonl")]
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    res = runner.invoke(sweep_command, [*base, "--scheduler", "tcp://127.0.0.1:1"])
    assert isinstance(res.exception, PacimError)
    assert "pip install 'pacim[dask]'" in str(res.exception)
    res = runner.invoke(sweep_command, [*base, "--grid", "pac.operand"])
    assert isinstance(res.exception, PacimError) and "key.path=v1,v2" in str(res.exception)
    res = runner.invoke(plot_command, [str(tmp_path / "missing.jsonl"), "-o", "x.png"])
    assert isinstance(res.exception, PacimError) and "no such file" in str(res.exception)
    with pytest.raises(PacimError, match="names or paths"):
        sweep(_arch(), GRID, [object()], data=False)  # type: ignore[list-item]
    with pytest.raises(PacimError, match="unknown workload 'nope'"):
        sweep(_arch(), GRID, ["nope"], data=False)
    out = tmp_path / "locked.jsonl"
    first = Store(out)  # another sweep holds the file
    try:
        with pytest.raises(PacimError, match="another sweep is writing"):
            sweep(_arch(), GRID, [WL], data=False, out=out)
    finally:
        first.close()


# --- helpers (module level: workers import them by name) -----------------------------------
class _NoRun(SerialExecutor):
    """An executor that must not be used: everything is resumed from the file."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a resumed point was simulated again")


class _InterruptAfter(SerialExecutor):
    """Runs tasks in-process; the n-th submit raises KeyboardInterrupt (a Ctrl-C)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.n -= 1
        if self.n <= 0:
            raise KeyboardInterrupt
        return super().submit(fn, *args, **kwargs)


def _cache_keys() -> list[tuple[str, bool, int]]:
    from pacim.sweeps import worker

    return list(worker._WORKLOADS)


def _die_on_operand_3(arch: Any, workload: str, data: bool, seed: int) -> Any:
    """The real pipeline, except that operand 3 kills the worker process outright."""
    if arch.pac.operand == 3:
        os._exit(1)
    from pacim.pipeline import simulate

    return simulate(arch, cached_workload(workload, data, seed), data=data, seed=seed)



def test_points_sharing_a_schedule_are_grouped():
    from pacim.sweeps import expand_grid, group_tasks, make_points

    grid = {"technology.vdd": [0.9, 1.0, 1.1], "macro.banks": [8, 16]}
    pts = make_points(_arch(), expand_grid(grid), [WL], data=False, seed=0)
    tasks = [p.task for p in pts]
    groups = group_tasks(tasks)
    assert sorted(len(g) for g in groups) == [3, 3]  # per banks value, all three voltages
    for g in groups:
        assert len({t["arch"]["macro"]["banks"] for t in g}) == 1
    assert [len(g) for g in group_tasks(tasks, max_group=2)] == [2, 1, 2, 1]


def test_the_package_does_not_shadow_the_function() -> None:
    """`pacim.sweep` stays the function once the sweeps package (and its modules) is loaded."""
    import pacim.sweeps.plots  # noqa: F401
    import pacim.sweeps.run  # noqa: F401

    assert callable(pacim.sweep) and pacim.sweep.__module__ == "pacim"
