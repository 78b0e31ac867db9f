"""Sweeps under abuse (issue 15): outputs that are not regular files, a streamed resume read,
workers that die with a `kill -9`-ed sweep, stale locks, and a grid where every point fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pacim.errors import PacimError
from pacim.sweeps import Store, iter_records, read_records
from pacim.sweeps import store as store_mod
from pacim.sweeps.lifetime import pid_alive

BASE = ["--arch", "pacim_65nm", "--workload", "resnet18-cifar", "--no-data",
        "--set", "pac.dynamic=null"]


def pacim(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacim", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _stderr_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_every_point_failing_exits_2_saying_why_once(tmp_path: Path) -> None:
    r = pacim("sweep", *BASE, "--grid", "foo.bar=1,2", "--out", "s.jsonl", "--workers", "0",
              cwd=tmp_path)
    line = _stderr_line(r)
    assert "no point succeeded" in line and "foo: unknown key (2 points)" in line
    assert (r.stdout + r.stderr).count("unknown key") == 1
    assert "0 ok, 2 failed" in r.stdout


@pytest.mark.parametrize("out", ["/dev/full", "/dev/null", "fifo"])
def test_store_refuses_what_is_not_a_regular_file(tmp_path: Path, out: str) -> None:
    os.mkfifo(tmp_path / "fifo")
    r = pacim("sweep", *BASE, "--grid", "pac.operand=2,3", "--out", out, cwd=tmp_path,
              timeout=60)
    line = _stderr_line(r)
    assert f"--out {out}" in line and "not a regular file" in line


def test_store_to_stdout_does_not_hang(tmp_path: Path) -> None:
    """`--out /dev/stdout | cat` used to read its own output pipe forever."""
    p = subprocess.Popen([sys.executable, "-m", "pacim", "sweep", *BASE, "--grid",
                          "pac.operand=2,3", "--out", "/dev/stdout"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "not a regular file" in err and out == ""


def test_resume_read_is_streamed_and_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    p = tmp_path / "s.jsonl"
    p.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "torn')
    it = iter_records(p)
    assert next(it) == {"key": "a"}  # a generator: one line at a time
    assert [r["key"] for r in read_records(p, repair=True)] == ["a", "b"]
    assert p.read_text().endswith('"b"}\n')  # the torn last line was cut off
    monkeypatch.setattr(store_mod, "MAX_LINE", 64)
    p.write_text('{"key": "a"}\n' + "x" * 200)  # endless bytes without a newline
    with pytest.raises(PacimError, match="line 2 is longer than"):
        read_records(p)
    with pytest.raises(PacimError, match="not a regular file"):
        read_records("/dev/zero")
    with pytest.raises(PacimError, match="not a regular file"):
        Store(Path("/dev/full"))


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_kill_9_of_the_sweep_leaves_no_worker_and_no_lock(tmp_path: Path) -> None:
    out = tmp_path / "k.jsonl"
    args = [*BASE, "--grid", "pac.operand=1,2,3,4,5,6,7,8", "--grid", "macro.banks=4,8,16,32",
            "--grid", "macro.rows=64,128,256", "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "pacim", "sweep", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    workers: list[int] = []
    while proc.poll() is None and time.time() - t0 < 60:
        workers = _children(proc.pid)
        if len(workers) >= 2 and out.exists() and out.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None and workers, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # the main process only, not its process group
    proc.wait()
    try:
        Store(out).close()  # the lock is free at once: no worker inherited it
        t0 = time.time()
        while any(pid_alive(w) for w in workers) and time.time() - t0 < 10:
            time.sleep(0.05)
        assert not any(pid_alive(w) for w in workers), "workers outlived the killed sweep"
    finally:  # never leave this test's workers behind, even when it fails
        for w in workers:
            if pid_alive(w):
                os.kill(w, signal.SIGKILL)


ORPHAN = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
if os.fork() == 0:  # a child that keeps the locked descriptor, as old workers did
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(60)
    os._exit(0)
print(os.getpid(), flush=True)
"""


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_stale_lock_of_a_dead_sweep_is_taken_over(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "s.jsonl"
    r = subprocess.run([sys.executable, "-c", ORPHAN, str(out)], capture_output=True,
                       text=True, timeout=30, check=True)
    dead = int(r.stdout)
    live = Store(tmp_path / "other.jsonl")  # a live sweep's lock is not stolen
    try:
        with pytest.raises(PacimError, match=rf"another sweep is writing this file \(pid "
                                             rf"{os.getpid()}\)"):
            Store(tmp_path / "other.jsonl")
    finally:
        live.close()
    st = Store(out)
    try:
        assert st.took_over is not None and st.took_over.dead_pid == dead
        assert st.took_over.ended and not any(pid_alive(p) for p in st.took_over.ended)
    finally:
        st.close()
    assert "took over the lock of a dead sweep" in capsys.readouterr().err
