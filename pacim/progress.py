"""Progress on stderr, for runs longer than about a second: click's bar on a terminal, or (asked
for with --progress when stderr is a log file or a pipe) one plain line every few seconds."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

LOG_INTERVAL_S = 5.0  # seconds between two progress lines in a log


class Progress:
    """Call with (done, total, label); draws click's progress bar on stderr after `delay` s when
    stderr is a TTY. force=True also reports when stderr is not a TTY (a line every `interval`
    s, and one at the end); force=False never reports. `extra` is shown before the label.
    """

    def __init__(self, title: str, delay: float = 1.0, force: bool | None = None,
                 interval: float = LOG_INTERVAL_S) -> None:
        self.title = title
        self.delay = delay
        self.interval = interval
        self.t0 = time.perf_counter()
        tty = sys.stderr.isatty()
        self.enabled = tty if force is None else force
        self.log = self.enabled and not tty  # plain lines instead of a bar
        self.extra = ""
        self.label = ""
        self.bar: Any = None
        self.last_line = 0.0
        self.state: tuple[int, int] | None = None

    def _info(self, _item: Any) -> str:
        return f"{self.extra}{self.label[:30]}"

    def _line(self, done: int, total: int, now: float) -> None:
        label = f" {self.extra}{self.label}".rstrip()
        click.echo(f"{self.title}: {done}/{total}{label} ({now - self.t0:.1f} s)", err=True)
        self.last_line = now
        self.state = None  # reported

    def __call__(self, done: int, total: int, label: str = "") -> None:
        """Update the bar (or, in a log, write a line when `interval` has passed)."""
        now = time.perf_counter()
        if not self.enabled or now - self.t0 < self.delay:
            return
        self.label = label
        if self.log:
            self.state = (done, total)
            if now - self.last_line >= self.interval:
                self._line(done, total, now)
            return
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
        """Finish the line (and show the cursor again) if anything was drawn; in a log, one
        last line with the final count."""
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None
        if self.log and self.state is not None:  # the last count, unless already reported
            self._line(*self.state, time.perf_counter())
