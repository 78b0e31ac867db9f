"""Worker processes that die with their parent: a local sweep worker must never outlive the
sweep that started it (a `kill -9` of the sweep would otherwise leave it running)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_INTERVAL_S = 0.5


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie (a zombie holds no files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc: kill(0) said it exists


def _set_death_signal() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies (prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux, or no prctl
        return False


def die_with_parent(main_pid: int | None = None) -> None:
    """Bind this process's life to its parent's (and to `main_pid`'s, the sweep that created
    the pool, when it is not the parent, e.g. under a forkserver).

    The kernel's parent-death signal where there is one; and in every case a watchdog thread
    that exits the process as soon as the parent changes or `main_pid` is gone.
    """
    parent = os.getppid()
    _set_death_signal()
    if parent == 1 or (main_pid is not None and not pid_alive(main_pid)):
        os._exit(1)  # the parent died before the signal was armed

    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            if os.getppid() != parent or (main_pid is not None and not pid_alive(main_pid)):
                with contextlib.suppress(Exception):
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(1)

    threading.Thread(target=watch, name="pacim-parent-watchdog", daemon=True).start()
