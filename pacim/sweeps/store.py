"""The resumable JSONL store of a sweep: one record per line, appended durably as points finish;
a torn last line (a kill mid-write) is skipped or cut off.

The store is a regular file, read back as a stream (memory bounded by one record, never by the
file), and locked (flock) while a sweep writes it. Forked children never keep the lock (the fd
is replaced by /dev/null in them), so a killed sweep releases it at once; a lock left to the
orphans of a sweep killed by an older version (its pid gone) is detected and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import PacimError
from .lock import LockTaken, take_lock

MAX_LINE = 16 << 20  # bytes: a record is a few kB; longer is not a sweep file


def check_store_path(path: str | Path, option: str | None = None) -> None:
    """Refuse, before a sweep runs, an output that is not (or cannot become) a regular file:
    a device (/dev/full), a pipe (/dev/stdout | cat), a FIFO or a directory."""
    from ..report import check_writable

    p = Path(path)
    name = f"{option} {p}" if option else str(p)
    if p.exists() and not p.is_file():
        kind = "a directory" if p.is_dir() else "a device, pipe or FIFO"
        raise PacimError(f"{name}: is {kind}, not a regular file (a sweep reads its output back "
                         "to resume, and locks and appends to it)")
    check_writable(p, option)


def iter_records(path: str | Path, repair: bool = False) -> Iterator[dict[str, Any]]:
    """Records of a sweep JSONL, read line by line; a torn last line (killed mid-write) is
    skipped, or cut off the file with repair=True (the caller holds the lock)."""
    p = Path(path)
    if not p.exists():
        return
    if not p.is_file():
        raise PacimError(f"{p}: not a regular file: not a sweep record file")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise PacimError(f"{p}: cannot read: {e.strerror or e}") from None
    with f:
        lineno, offset = 0, 0
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                return
            lineno += 1
            torn = not line.endswith(b"\n")
            if torn and len(line) > MAX_LINE:
                raise PacimError(f"{p}: line {lineno} is longer than {MAX_LINE >> 20} MiB: "
                                 "not a sweep record file")
            if torn:  # only the last line can be torn: records are appended whole
                if repair:
                    with open(p, "r+b") as w:
                        w.truncate(offset)
                return
            offset += len(line)
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8", "replace"))
            except json.JSONDecodeError:
                raise PacimError(f"{p}: line {lineno}: not a JSON record") from None
            if isinstance(rec, dict):
                yield rec


def read_records(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """All records of a sweep JSONL (see iter_records)."""
    return list(iter_records(path, repair))


_OPEN_FDS: set[int] = set()  # fds of the open stores of this process


def _drop_in_child() -> None:
    """In a forked child (a local worker): point the inherited store fds at /dev/null, so the
    child never holds the parent's lock (a kill -9 of the parent releases it at once)."""
    if not _OPEN_FDS:
        return
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDONLY)
        for fd in list(_OPEN_FDS):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
        os.close(null)
    _OPEN_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def _open_regular(path: Path) -> int:
    """An O_APPEND fd of a regular file (created if missing); anything else is refused."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        raise PacimError(f"{path}: cannot write: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PacimError(f"{path}: not a regular file (a sweep reads its output back to resume)")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


class Store:
    """Appends records durably (flush + fsync) under an exclusive lock on the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = _open_regular(path)
        try:
            self.took_over: LockTaken | None = take_lock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if self.took_over is not None:
            print(f"note: {path}: {self.took_over}", file=sys.stderr)
        self.f: IO[str] = os.fdopen(fd, "a", encoding="utf-8")
        _OPEN_FDS.add(fd)

    def append(self, rec: Mapping[str, Any]) -> None:
        """Write one record and flush it to the OS (it survives a kill of this process)."""
        try:
            self.f.write(json.dumps(rec, allow_nan=False) + "\n")
            self.f.flush()
        except OSError as e:
            raise PacimError(f"{self.path}: cannot write: {e.strerror or e}") from None

    def truncate(self) -> None:
        """Empty the file (a fresh sweep)."""
        self.f.truncate(0)

    def sync(self) -> None:
        """fsync: the records survive a machine crash too (once per batch of finished points)."""
        try:
            os.fsync(self.f.fileno())
        except OSError as e:
            raise PacimError(f"{self.path}: cannot write: {e.strerror or e}") from None

    def close(self) -> None:
        """fsync and close (releases the lock)."""
        _OPEN_FDS.discard(self.f.fileno())
        with contextlib.suppress(OSError):
            os.fsync(self.f.fileno())
        self.f.close()
