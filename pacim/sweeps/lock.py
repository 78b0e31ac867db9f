"""The sweep store's exclusive lock (flock), with stale-lock detection.

flock is released by the kernel when every descriptor of the locked file is closed. A sweep
killed with SIGKILL by an older pacim left its forked workers holding such a descriptor, so the
lock stayed held by orphans forever. On Linux the lock's owner is read from /proc/locks: when
that pid is gone, the processes whose descriptors still carry the lock (/proc/*/fdinfo) are
orphans of the dead sweep; they are ended and the lock is taken over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import PacimError
from .lifetime import pid_alive

TAKEOVER_WAIT_S = 5.0


@dataclass(frozen=True)
class LockTaken:
    """A stale lock taken over: the dead sweep's pid and the orphans that were ended."""

    dead_pid: int
    ended: tuple[int, ...]

    def __str__(self) -> str:
        pids = ", ".join(map(str, self.ended)) or "none"
        return (f"took over the lock of a dead sweep (pid {self.dead_pid}); ended its "
                f"orphaned worker(s) still holding it: {pids}")


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        raise PacimError(f"cannot lock the sweep file: {e.strerror or e}") from None
    return True


def _lock_key(fd: int) -> str:
    """The file's id as /proc/locks writes it: MAJOR:MINOR:INODE (hex, hex, decimal)."""
    st = os.fstat(fd)
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _flock_pid(line: str, key: str) -> int | None:
    """The pid of a granted FLOCK entry on `key` in a /proc/locks or fdinfo line."""
    tok = line.split()
    if tok and tok[0] == "lock:":
        tok = tok[1:]
    if len(tok) < 6 or tok[1] != "FLOCK" or tok[5] != key:
        return None  # another file, another kind of lock, or a waiter ("->")
    try:
        return int(tok[4])
    except ValueError:
        return None


def lock_owner(fd: int) -> int | None:
    """The pid that took the flock on this file (Linux /proc/locks), or None if unknown."""
    key = _lock_key(fd)
    try:
        with open("/proc/locks") as f:
            for line in f:
                pid = _flock_pid(line, key)
                if pid is not None:
                    return pid
    except OSError:
        return None
    return None


def lock_holders(fd: int) -> list[int]:
    """Processes (other than this one) with a descriptor that carries the flock on this file."""
    key = _lock_key(fd)
    me, out = os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            with contextlib.suppress(OSError):
                for info in os.scandir(f"/proc/{entry.name}/fdinfo"):
                    with open(info.path) as f:
                        if any(_flock_pid(ln, key) is not None for ln in f if "FLOCK" in ln):
                            out.append(int(entry.name))
                            break
    return out


def _end(pids: list[int], grace_s: float = 1.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for p in pids if pid_alive(p)]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        t0 = time.monotonic()
        while any(pid_alive(p) for p in pids) and time.monotonic() - t0 < grace_s:
            time.sleep(0.02)


def take_lock(fd: int, path: Path, wait_s: float = TAKEOVER_WAIT_S) -> LockTaken | None:
    """Lock the file exclusively; None when it was free, a LockTaken when a dead sweep's lock
    was taken over. One PacimError when a live sweep holds it."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None
    if _try_lock(fd):
        return None
    owner = lock_owner(fd)
    if owner is None or owner <= 0 or pid_alive(owner):
        who = f" (pid {owner})" if owner is not None and owner > 0 else ""
        raise PacimError(f"{path}: another sweep is writing this file{who}")
    holders = lock_holders(fd)
    _end(holders)
    t0 = time.monotonic()
    while not _try_lock(fd):
        now_owner = lock_owner(fd)
        if now_owner is not None and now_owner != owner and pid_alive(now_owner):
            raise PacimError(f"{path}: another sweep is writing this file (pid {now_owner})")
        if time.monotonic() - t0 > wait_s:
            left = ", ".join(map(str, lock_holders(fd))) or "unknown"
            raise PacimError(f"{path}: the lock of a dead sweep (pid {owner}) is still held "
                             f"by pid(s) {left}; end them and run again")
        time.sleep(0.05)
    return LockTaken(owner, tuple(holders))
