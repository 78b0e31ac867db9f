"""A small discrete-event core: a heap-ordered queue of tasks on resources with busy-until times.

SimPy-like, cut to what the scheduler needs. A task needs zero or more resources for a fixed
number of cycles and may depend on other tasks. When its last dependency ends it becomes ready;
the queue pops ready tasks in time order (FIFO arbitration: a resource serves requests in the
order they became ready), and a popped task starts when all its resources are free. Every start
and end is an exact integer cycle.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any


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
    """One event: `duration` cycles on `resources`, after every task it depends on."""

    __slots__ = ("kind", "resources", "duration", "pending", "succ", "ready", "start", "end",
                 "critical", "meta")

    def __init__(self, kind: str, resources: tuple[Resource, ...], duration: int,
                 meta: Any) -> None:
        self.kind = kind
        self.resources = resources
        self.duration = duration
        self.pending = 0  # dependencies not yet ended
        self.succ: list[Task] = []
        self.ready = 0  # latest end of the dependencies
        self.start = -1
        self.end = -1
        self.critical: Task | None = None  # the dependency that ended last (set the ready time)
        self.meta = meta

    @property
    def waited(self) -> int:
        """Cycles between becoming ready and starting (resource contention)."""
        return self.start - self.ready


class Engine:
    """Tasks plus resources; `run()` assigns every task its start and end cycle."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.tasks: list[Task] = []
        self.now = 0

    def resource(self, name: str, category: str) -> Resource:
        """The resource called `name`, created on first use."""
        r = self.resources.get(name)
        if r is None:
            r = self.resources[name] = Resource(name, category)
        return r

    def add(self, kind: str, resources: tuple[Resource, ...], duration: int,
            deps: Iterable[Task | None] = (), meta: Any = None) -> Task:
        """A task of `duration` (>= 0) cycles on `resources`, after all `deps` (None skipped)."""
        t = Task(kind, resources, duration, meta)
        n = 0
        for d in deps:
            if d is not None:
                d.succ.append(t)
                n += 1
        t.pending = n
        self.tasks.append(t)
        return t

    def run(self) -> int:
        """Process every task in ready-time order; returns the last end cycle."""
        heap: list[tuple[int, int, Task]] = []
        seq = 0
        for t in self.tasks:
            if t.pending == 0:
                heap.append((t.ready, seq, t))
                seq += 1
        heapq.heapify(heap)
        push, pop = heapq.heappush, heapq.heappop
        last = 0
        done = 0
        while heap:
            ready, _, t = pop(heap)
            start = ready
            for r in t.resources:
                if r.busy_until > start:
                    start = r.busy_until
            end = start + t.duration
            for r in t.resources:
                r.busy_until = end
                r.busy += t.duration
            t.start, t.end = start, end
            if end > last:
                last = end
            done += 1
            for s in t.succ:
                if end > s.ready or s.critical is None:
                    if end > s.ready:
                        s.ready = end
                    s.critical = t
                s.pending -= 1
                if s.pending == 0:
                    push(heap, (s.ready, seq, s))
                    seq += 1
        if done != len(self.tasks):
            raise RuntimeError(f"{len(self.tasks) - done} tasks never became ready (a cycle)")
        self.now = last
        return last
