"""A quiet progress bar on stderr: appears only for runs longer than about a second."""

from __future__ import annotations

import sys
import time


class Progress:
    """Call with (done, total, label); draws on stderr after `delay` s when stderr is a TTY."""

    def __init__(self, title: str, delay: float = 1.0, force: bool | None = None) -> None:
        self.title = title
        self.delay = delay
        self.t0 = time.perf_counter()
        self.enabled = sys.stderr.isatty() if force is None else force
        self.drawn = False
        self.extra = ""

    def __call__(self, done: int, total: int, label: str = "") -> None:
        """Update the bar."""
        if not self.enabled or time.perf_counter() - self.t0 < self.delay:
            return
        width = 28
        frac = done / total if total else 1.0
        bar = "#" * int(frac * width)
        msg = f"\r{self.title} [{bar:<{width}}] {done}/{total} {self.extra}{label[:30]:<30}"
        sys.stderr.write(msg)
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        """Finish the line if anything was drawn."""
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
