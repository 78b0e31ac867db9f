"""Steady-state extrapolation: skip whole periods of a periodic schedule, exactly.

The event engine is deterministic and time-invariant: shift every time of a state by D and its
future shifts by D. So if the engine's state at one cut equals its state p steps earlier (times
taken relative to the cut), and the tasks still to come are the same p steps apart (the
program's input is periodic), then everything between the two cuts repeats, again and again, as
long as the input stays periodic: K periods can be skipped by adding K times the counters'
change over one period and shifting every pending time by K times its duration.

When it applies (`Detector.visit`, at the cuts a program marks as anchors):
- the state is detected, never guessed: a signature of every pending event (step offset, role,
  ready time, dependencies left, and what the program says matters, e.g. the stall cause it
  would blame), the heap order, every resource's busy-until time and the program's own times,
  all relative to the cut, must equal a signature seen before;
- the program confirms the input is periodic over the whole skipped stretch plus a margin
  (`Program.extent`);
- at least `Steady.min_skip` steps are skipped, and never when a trace is written (every event
  is a trace row).
Counters extrapolate linearly (busy cycles, events, stall cycles by cause): the result equals
the full simulation field by field (tests/test_sched_steady.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .engine import Engine, Task


@dataclass(frozen=True)
class Steady:
    """Steady-state extrapolation settings (`enabled=False`: simulate every event)."""

    enabled: bool = True
    min_skip: int = 64  # extrapolate only when at least this many steps are skipped
    margin: int = 12  # steps around a cut whose events a signature may hold
    max_states: int = 4096  # signatures kept (forgotten all at once beyond)
    patience: int = 64  # anchors in a row without a repeat before the program's next reset


class Program(Protocol):
    """What a task source exposes to the detector."""

    created: int  # last step whose tasks exist

    def recent(self) -> Sequence[Sequence[Task]]:
        """Tasks of the most recent steps, oldest first (the oldest all processed)."""

    def extent(self, start: int, period: int) -> int:
        """A step `hi` such that step t's input equals step t-period's for all t in [start, hi)."""

    def periods(self, step: int) -> Sequence[int]:
        """Input periods (in steps) worth trying at this step's cut."""

    def skip(self, steps: int) -> None:
        """Move the program `steps` ahead (its existing tasks are relabelled by the detector)."""

    def counters(self) -> tuple[int, ...]:
        """Cumulative integer counters that grow linearly over periods."""

    def advance(self, periods: int, deltas: tuple[int, ...], shift: int) -> None:
        """Add periods x deltas to the counters and `shift` to the program's own times."""

    def relative(self, now: int) -> tuple[int, ...]:
        """The program's own state times, relative to now."""

    def cause(self, task: Task) -> Hashable:
        """Anything else about a pending task its future depends on (None if nothing)."""


class Detector:
    """Finds repeated states at anchor tasks and jumps over whole periods."""

    def __init__(self, engine: Engine, program: Program, opts: Steady) -> None:
        self.eng, self.prog, self.opts = engine, program, opts
        self.resources = list(engine.resources.values())
        self.seen: dict[tuple, tuple[int, int, tuple[int, ...]]] = {}
        self.by_step: dict[int, tuple[tuple, int, tuple[int, ...]]] = {}
        self.jumps = 0
        self.skipped = 0  # steps extrapolated
        self.skipped_events = 0
        self.misses = 0  # anchors since the last repeat or reset

    def reset(self) -> None:
        """Look for repeats again (the program entered a new stretch, e.g. a new pass)."""
        self.misses = 0

    def _signature(self, step: int, now: int) -> tuple | None:
        """The engine state at this cut relative to (step, now); None when it is not known to be
        complete (an unprocessed event outside the recent steps, or too far from the cut).

        Every processed or started-on event of the steps from step-2 on is in it (pending ones
        with their ready time, dependencies left and cause), so equal signatures also mean
        equal numbers of events processed so far, relative to the cut. Events not touched yet
        are as good as not created."""
        recent = self.prog.recent()
        if not recent or any(x.start < 0 for x in recent[0]):
            return None
        m = self.opts.margin
        if self.prog.created - step > m:
            return None
        cause = self.prog.cause
        events, heaped = [], []
        for tasks in recent:
            for x in tasks:
                off = x.step - step
                if off < -2:
                    if x.start < 0:
                        return None
                    continue
                if off < -m:
                    return None
                if x.start >= 0:
                    events.append((off, x.role))
                elif x.pending == 0:
                    heaped.append(x)
                elif x.pending < x.ndeps:  # a ready time before now is as good as now's
                    events.append((off, x.role, max(-1, x.ready - now), x.pending, cause(x)))
        if len(heaped) != len(self.eng.heap):
            return None
        heaped.sort(key=lambda x: (x.ready, x.seq))
        heap = tuple((x.step - step, x.role, x.ready - now, cause(x)) for x in heaped)
        res = tuple(r.busy_until - now if r.busy_until > now else 0 for r in self.resources)
        return res, tuple(events), heap, self.prog.relative(now), self.eng.last - now

    def _snapshot(self) -> tuple[int, ...]:
        e = self.eng
        return (e.done, e.created, *(r.busy for r in self.resources), *self.prog.counters())

    def visit(self, task: Task) -> bool:
        """At an anchor task just processed: remember the state, or jump if it repeats.

        The repeat is looked for at the last cut with the same signature, then at the cuts the
        program's input periods point to (a state may repeat sooner than the input does)."""
        if self.misses >= self.opts.patience:
            return False
        self.misses += 1
        step, now = task.step, self.eng.now
        sig = self._signature(step, now)
        if sig is None:
            return False
        snap = self._snapshot()
        last = self.seen.get(sig)
        if len(self.seen) >= self.opts.max_states:
            self.seen.clear()
            self.by_step.clear()
        self.seen[sig] = (step, now, snap)
        self.by_step[step] = (sig, now, snap)
        tries = [] if last is None else [(step - last[0], last[1], last[2])]
        for period in self.prog.periods(step):
            old = self.by_step.get(step - period)
            if old is not None and old[0] == sig:
                tries.append((period, old[1], old[2]))
        m = self.opts.margin
        for period, now0, snap0 in tries:
            hi = self.prog.extent(step - m, period)
            periods = (hi - 1 - m - step) // period  # inputs repeat up to the margin past it
            if period > 0 and periods >= 1 and periods * period >= self.opts.min_skip:
                self._jump(periods, period, now - now0,
                           tuple(a - b for a, b in zip(snap, snap0, strict=True)))
                self.misses = 0
                return True
        return False

    def _jump(self, periods: int, period: int, dt: int, delta: tuple[int, ...]) -> None:
        e, shift, steps = self.eng, periods * dt, periods * period
        nres = len(self.resources)
        for r, d in zip(self.resources, delta[2:2 + nres], strict=True):
            r.busy_until += shift
            r.busy += periods * d
        alive = 0
        for tasks in self.prog.recent():
            for x in tasks:
                if x.start < 0:
                    alive += 1
                    if x.pending == 0 or x.pending < x.ndeps:
                        x.ready += shift
                x.step += steps
        e.heap[:] = [(ready + shift, seq, x) for ready, seq, x in e.heap]
        e.done += periods * delta[0]
        e.created = e.done + alive  # every unprocessed event is a recent one
        e.last += shift
        e.now += shift
        self.prog.skip(steps)
        self.prog.advance(periods, delta[2 + nres:], shift)
        self.jumps += 1
        self.skipped += steps
        self.skipped_events += periods * delta[0]
