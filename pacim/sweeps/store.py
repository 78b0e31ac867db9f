"""The resumable JSONL store of a sweep: one record per line, appended durably as points finish;
a torn last line (a kill mid-write) is skipped or cut off."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import PacimError


def read_records(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a sweep JSONL; a torn last line (killed mid-write) is skipped or cut off."""
    p = Path(path)
    if not p.exists():
        return []
    raw = p.read_bytes()
    if repair and raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1  # only the last line can be torn: records are appended whole
        with open(p, "r+b") as f:
            f.truncate(cut)
        raw = raw[:cut]
    out = []
    for lineno, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if lineno == raw.count(b"\n") + 1:  # a torn last line
                continue
            raise PacimError(f"{p}: line {lineno}: not a JSON record") from None
        if isinstance(rec, dict):
            out.append(rec)
    return out


class Store:
    """Appends records durably (flush + fsync) under an exclusive lock on the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.f: IO[str] = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise PacimError(f"{path}: cannot write: {e.strerror or e}") from None
        try:
            import fcntl

            fcntl.flock(self.f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError:
            self.f.close()
            raise PacimError(f"{path}: another sweep is writing this file") from None

    def append(self, rec: Mapping[str, Any]) -> None:
        """Write one record and flush it to the OS (it survives a kill of this process)."""
        self.f.write(json.dumps(rec, allow_nan=False) + "\n")
        self.f.flush()

    def truncate(self) -> None:
        """Empty the file (a fresh sweep)."""
        self.f.truncate(0)

    def sync(self) -> None:
        """fsync: the records survive a machine crash too (once per batch of finished points)."""
        os.fsync(self.f.fileno())

    def close(self) -> None:
        """fsync and close (releases the lock)."""
        with contextlib.suppress(OSError):
            os.fsync(self.f.fileno())
        self.f.close()
