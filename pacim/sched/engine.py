"""A small discrete-event core: a heap-ordered queue of tasks on resources with busy-until times.

SimPy-like, cut to what the scheduler needs. A task needs zero or more resources for a fixed
number of cycles and may depend on other tasks. When its last dependency ends it becomes ready;
the queue pops ready tasks in time order (FIFO arbitration: a resource serves requests in the
order they became ready), and a popped task starts when all its resources are free. Every start
and end is an exact integer cycle.

Streaming: tasks are created as the run goes, by a `source` (see `Source`), a few steps ahead of
the tasks being processed, and retired as they end, so memory stays bounded however many events
a run has. Before it processes a task of step s the engine asks the source for the steps that
may depend on it (up to s+2); a dependency on a task processed earlier still counts (its end).
A task's `hook` runs after it is processed (the scheduler counts stalls there, and detects
steady state).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any, Protocol

INF_STEP = 1 << 62  # "every step exists"


class Resource:
    """Something only one task can use at a time (a bank, a bus, the PAC engine)."""

    __slots__ = ("name", "category", "busy_until", "busy")

    def __init__(self, name: str, category: str) -> None:
        self.name = name
        self.category = category  # bank | bus | pac_engine | encoder
        self.busy_until = 0
        self.busy = 0  # cycles in use

    def __repr__(self) -> str:
        return f"Resource({self.name!r}, busy_until={self.busy_until})"


class Task:
    """One event: `duration` cycles on `resources`, after every task it depends on.

    `step` and `role` place it in its source's program (the scheduler: vector batch, and which
    of the batch's events); `start` is -1 until it is processed.
    """

    __slots__ = ("kind", "resources", "duration", "pending", "ndeps", "succ", "ready", "start",
                 "end", "critical", "meta", "step", "role", "hook", "seq", "path")

    def __init__(self, kind: str, resources: tuple[Resource, ...], duration: int,
                 meta: Any = None, step: int = 0, role: int = 0, hook: Any = None) -> None:
        self.kind = kind
        self.resources = resources
        self.duration = duration
        self.succ: list[Task] | None = []
        self.ready = 0  # latest end of the dependencies processed so far
        self.start = -1
        self.end = -1
        self.critical: Task | None = None  # the dependency that ended last (set the ready time)
        self.meta = meta
        self.step = step
        self.role = role
        self.hook = hook

    @property
    def waited(self) -> int:
        """Cycles between becoming ready and starting (resource contention)."""
        return self.start - self.ready


class Source(Protocol):
    """What creates a run's tasks, step by step."""

    def ensure(self, step: int) -> int:
        """Create the tasks of every step up to a few past `step`; return the last step whose
        tasks may be processed now (all their dependents exist), INF_STEP when all exist."""

    def safe(self) -> int:
        """The same bound, without creating anything."""


class Engine:
    """Resources, a ready queue and a task source; `run()` assigns every task its start and end.

    Counters (`created`, `done`, `last`: the latest end so far) cover every task; processed
    tasks are dropped by the engine (their dependents keep what they need).
    """

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.heap: list[tuple[int, int, Task]] = []
        self.seq = 0  # FIFO order of tasks that become ready at the same cycle
        self.created = 0
        self.done = 0
        self.last = 0
        self.now = 0  # ready time of the task being processed (heap pops are monotone)

    def resource(self, name: str, category: str) -> Resource:
        """The resource called `name`, created on first use."""
        r = self.resources.get(name)
        if r is None:
            r = self.resources[name] = Resource(name, category)
        return r

    def add(self, kind: str, resources: tuple[Resource, ...], duration: int,
            deps: Iterable[Task | None] = (), meta: Any = None, step: int = 0, role: int = 0,
            hook: Any = None) -> Task:
        """A task of `duration` (>= 0) cycles on `resources`, after all `deps` (None skipped).

        A dependency already processed counts at once (its end bounds the ready time); a task
        whose every dependency has ended is queued at once."""
        t = Task(kind, resources, duration, meta, step, role, hook)
        n = pending = 0
        for d in deps:
            if d is not None:
                n += 1
                if d.succ is None:  # retired: it ended before this task existed
                    if d.end > t.ready or t.critical is None:
                        t.ready = max(t.ready, d.end)
                        t.critical = d
                else:
                    d.succ.append(t)
                    pending += 1
        t.pending, t.ndeps = pending, n
        self.created += 1
        if pending == 0:
            t.seq = self.seq
            heapq.heappush(self.heap, (t.ready, self.seq, t))
            self.seq += 1
        return t

    def run(self, source: Source | None = None) -> int:
        """Process every task in ready-time order; returns the last end cycle.

        A hook returning True has changed the engine's state (a steady-state jump): the loop
        reloads its counters.
        """
        heap = self.heap
        push, pop = heapq.heappush, heapq.heappop
        safe = INF_STEP if source is None else source.ensure(-1)
        last, done, seq = self.last, self.done, self.seq
        while heap:
            ready, _, t = pop(heap)
            if t.step > safe:
                safe = source.ensure(t.step)  # type: ignore[union-attr]
            start = ready
            res = t.resources
            for r in res:
                if r.busy_until > start:
                    start = r.busy_until
            dur = t.duration
            end = start + dur
            for r in res:
                r.busy_until = end
                r.busy += dur
            t.start, t.end = start, end
            if end > last:
                last = end
            done += 1
            for s in t.succ:  # type: ignore[union-attr]
                if end > s.ready or s.critical is None:
                    if end > s.ready:
                        s.ready = end
                    s.critical = t
                s.pending -= 1
                if s.pending == 0:
                    s.seq = seq
                    push(heap, (s.ready, seq, s))
                    seq += 1
            t.succ = None  # retired: nothing points from the past to the future
            h = t.hook
            if h is not None:
                self.now, self.last, self.done, self.seq = ready, last, done, seq
                if h(t):
                    last, done, seq = self.last, self.done, self.seq
                    safe = INF_STEP if source is None else source.safe()
            t.critical = None
        self.last, self.done, self.seq = last, done, seq
        if done != self.created:
            raise RuntimeError(f"{self.created - done} tasks never became ready (a cycle)")
        self.now = last
        return last
