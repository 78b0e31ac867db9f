"""A quiet progress bar on stderr (click's): drawn only when stderr is a terminal, and only for
runs longer than about a second."""

from __future__ import annotations

import sys
import time
from typing import Any

import click


class Progress:
    """Call with (done, total, label); draws click's progress bar on stderr after `delay` s when
    stderr is a TTY (force=True/False overrides the check). `extra` is shown before the label.
    """

    def __init__(self, title: str, delay: float = 1.0, force: bool | None = None) -> None:
        self.title = title
        self.delay = delay
        self.t0 = time.perf_counter()
        self.enabled = sys.stderr.isatty() if force is None else force
        self.extra = ""
        self.label = ""
        self.bar: Any = None

    def _info(self, _item: Any) -> str:
        return f"{self.extra}{self.label[:30]}"

    def __call__(self, done: int, total: int, label: str = "") -> None:
        """Update the bar."""
        if not self.enabled or time.perf_counter() - self.t0 < self.delay:
            return
        self.label = label
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.title, file=sys.stderr,
                                         show_pos=True, item_show_func=self._info, width=28)
        bar = self.bar
        bar.length = total
        if done > bar.pos:
            bar.update(done - bar.pos)
        else:  # a new label (or a restart) at the same count
            bar.pos = done
            bar.render_progress()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the line (and show the cursor again) if anything was drawn."""
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None
