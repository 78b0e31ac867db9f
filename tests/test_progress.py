"""The progress bar: click's bar on a terminal only, after the delay, finished by close()."""

from __future__ import annotations

import io
import os
import pty
import sys

import pytest

from pacim.progress import Progress


def _drawn(monkeypatch: pytest.MonkeyPatch, **kw: object) -> str:
    """What a Progress writes to a pseudo-terminal standing in for stderr."""
    master, slave = pty.openpty()
    term = os.fdopen(slave, "w")
    monkeypatch.setattr(sys, "stderr", term)
    p = Progress("simulate", **kw)  # type: ignore[arg-type]
    for i in range(3):
        p(i, 2, f"layer{i}")
    p.extra = "failed 1 "
    p(2, 2, "done")
    p.close()
    term.close()  # the terminal hangs up: the master reads what is left, then EIO
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks).decode()


def test_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _drawn(monkeypatch, delay=0.0)
    assert "simulate" in out and "0/2" in out and "2/2" in out and "layer1" in out
    assert "failed 1 done" in out
    assert out.endswith("\n")  # close() finished the line


def test_nothing_before_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _drawn(monkeypatch, delay=60.0) == ""


def test_nothing_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    p = Progress("sweep", delay=0.0)
    assert not p.enabled
    p(1, 2, "x")
    p.close()
    assert buf.getvalue() == ""


def test_progress_lines_in_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """--progress with stderr in a file: a plain line every `interval` s and one at the end."""
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    p = Progress("simulate", delay=0.0, force=True, interval=0.0)
    assert p.enabled and p.log
    p(1, 3, "conv1")
    p(2, 3, "conv2")
    p.interval = 3600.0
    p(3, 3, "fc")  # not yet reported: within the interval
    p.close()
    lines = buf.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["simulate: 1/3 conv1", "simulate: 2/3 conv2",
                                                   "simulate: 3/3 fc"]
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    q = Progress("simulate", delay=0.0, force=False)
    q(1, 2, "x")
    q.close()
    assert quiet.getvalue() == ""
