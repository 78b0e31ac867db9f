"""Running a sweep: one scheduling loop over any executor, records into the JSONL store.

A sweep is a loop over `simulate`: each point is (arch overrides, workload name). Points run on
local processes (default), any `concurrent.futures.Executor`, or a `dask.distributed.Client`
(through its own concurrent.futures adapter), with the same code. Tasks carry only the resolved
arch dict, the workload name and the overrides; each worker builds a workload once and caches it.
Every finished point is appended to the output JSONL (flush + fsync), keyed by a hash of the
point's full config, so a crash loses at most the points in flight and a re-run resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..arch import Arch, load_arch
from ..errors import PacimError
from ..report import json_safe
from .grid import Point, SimulateFn, expand_grid, make_points
from .lifetime import die_with_parent
from .store import Store, check_store_path, iter_records
from .worker import base_record, group_tasks, run_points

SweepProgress = Callable[[int, int, int], None]  # (done, failed, total)

DASK_HINT = "pip install 'pacim[dask]'"


def _init_worker(main_pid: int | None = None) -> None:
    """Local workers ignore SIGINT (Ctrl-C is the parent's to handle: cancel, keep records)
    and die with the sweep that started them (a kill -9 of it leaves no worker behind)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(main_pid)


class SerialExecutor(cf.Executor):
    """Runs each task in the calling process at submit time (debugging, tests, --workers 0)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run fn now; return a finished future."""
        fut: cf.Future[Any] = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as e:  # delivered through the future, as executors do
            fut.set_exception(e)
        return fut


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_executor(workers: int | None = None) -> cf.Executor:
    """A process pool (one worker per core by default) whose workers ignore SIGINT.

    Workers fork from this process with the simulator already imported, so they start at once;
    when other threads are running (forking them is unsafe) they come from a forkserver
    instead. workers=0 gives the in-process SerialExecutor.
    """
    n = default_workers() if workers is None else int(workers)
    if n < 0:
        raise PacimError(f"workers must be >= 0, got {n}")
    if n == 0:
        return SerialExecutor()
    preload = ["pacim.sweeps", "pacim.pipeline", "pacim.workloads"]
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        for mod in preload:
            with contextlib.suppress(ImportError):
                importlib.import_module(mod)
        ctx = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(preload)
    else:  # pragma: no cover - Windows
        ctx = multiprocessing.get_context()
    return cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                                  initargs=(os.getpid(),))


def is_dask_client(obj: Any) -> bool:
    """True for a dask.distributed.Client (checked without importing dask)."""
    return type(obj).__module__.startswith("distributed") and hasattr(obj, "get_executor")


def dask_client(address: str) -> Any:
    """Connect to a Dask scheduler; a one-line error when dask is missing or unreachable."""
    try:
        from distributed import Client
    except ImportError:
        raise PacimError(f"--scheduler needs Dask: {DASK_HINT}") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise PacimError(f"cannot reach the Dask scheduler at {address}: {e}") from None


def _slots(executor: Any, client: Any) -> int:
    """Parallel task slots of an executor (workers x threads), for the in-flight window."""
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # a best-effort size, never fatal
            return 4
    n = getattr(executor, "_max_workers", None)
    return n if isinstance(n, int) and n > 0 else default_workers()


def _error_record(pt: Point, arch_name: str, data: bool, seed: int) -> dict[str, Any]:
    rec = base_record(pt.key, pt.overrides, pt.workload, arch_name, data, seed)
    rec["status"] = "error"
    rec["error"] = pt.error
    rec["sim_s"] = 0.0
    return json_safe(rec)


def _run_tasks(
    executor: cf.Executor, tasks: Iterable[list[dict[str, Any]]], window: int,
    on_record: Callable[[dict[str, Any]], None], on_batch: Callable[[], None] = lambda: None,
) -> None:
    """Keep at most `window` tasks (groups of points) in flight; hand each record over as its
    task finishes.

    on_batch runs after each batch of records that finished together (the store's fsync).

    A task whose future fails (a dead worker, a cancelled task) stops the sweep after every
    already-finished record has been handed over: only the points in flight are lost.
    """
    pending: Iterator[list[dict[str, Any]]] = iter(tasks)
    inflight: dict[cf.Future[Any], list[dict[str, Any]]] = {}
    exhausted = False
    failure: BaseException | None = None
    lost = 0
    try:
        while failure is None:
            while not exhausted and len(inflight) < window:
                t = next(pending, None)
                if t is None:
                    exhausted = True
                    break
                try:
                    inflight[executor.submit(run_points, t)] = t
                except (cf.BrokenExecutor, RuntimeError) as e:  # a pool broken by a dead worker
                    failure, lost = e, len(t)
                    break
            if not inflight:
                break
            done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                group = inflight.pop(fut)
                exc = fut.exception() if not fut.cancelled() else cf.CancelledError()
                if exc is None:
                    for rec in fut.result():
                        on_record(rec)
                else:
                    failure = failure or exc
                    lost += len(group)
            on_batch()
        if failure is not None:
            # keep whatever else already finished; the rest of the in-flight points are lost
            for fut in [f for f in inflight if f.done() and not f.cancelled()]:
                if fut.exception() is None:
                    for rec in fut.result():
                        on_record(rec)
                    inflight.pop(fut)
            on_batch()
            n_lost = sum(len(g) for g in inflight.values()) + lost
            raise PacimError(
                f"sweep stopped: a worker failed ({type(failure).__name__}: {failure}); "
                f"{n_lost} point(s) in flight were lost; run again to resume"
            ) from failure
    finally:
        for fut in inflight:
            fut.cancel()


def _as_names(workloads: str | Path | Sequence[str | Path]) -> list[str]:
    items = [workloads] if isinstance(workloads, (str, Path)) else list(workloads)
    if not items:
        raise PacimError("a sweep needs at least one workload")
    names = []
    for w in items:
        if not isinstance(w, (str, Path)):
            raise PacimError("sweep workloads are names or paths (workers build them once "
                             f"each); got {type(w).__name__}")
        names.append(str(w))
    return list(dict.fromkeys(names))


def _check_workloads(names: Sequence[str]) -> None:
    """Fail fast on an unknown workload name or a bad workload file (shapes only: cheap)."""
    from ..workloads import available_workloads, load_workload

    for name in names:
        if name not in available_workloads():
            load_workload(name, data=False)  # raises PacimError naming the problem


def sweep(
    arch: Arch | str | Path,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    workloads: str | Path | Sequence[str | Path],
    *,
    data: bool = True,
    executor: Any = None,
    out: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    progress: SweepProgress | None = None,
    run: Mapping[str, Any] | None = None,
    _simulate: SimulateFn | None = None,
) -> list[dict[str, Any]]:
    """Simulate every (workload, grid point); returns one flat record per point.

    grid: {dotted arch key: [values]} (cartesian product) or a list of override dicts; the keys
    phase, context and tokens (grid.RUN_KEYS) are run options, not arch keys: such a point runs
    pacim.phase.simulate_phase (needs data=False). run: fixed run options the grid's override.
    executor: None (local processes, one per core), a concurrent.futures.Executor, or a
    dask.distributed.Client. out: JSONL appended as points finish; with resume, points whose
    key is already there are not run again (resume=False starts the file afresh).
    Records come back in (workload, grid) order; points with the same full config run once.
    progress(done, failed, total) is called as points finish.
    """
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    names = _as_names(workloads)
    overrides = expand_grid(grid)
    points = make_points(arch, overrides, names, data, seed, _simulate, run)
    if any(pt.task and pt.task.get("run") for pt in points):
        from .worker import cached_llm

        for name in names:  # fail fast: a phase needs an LLM workload's shape
            cached_llm(name, seed)
    else:
        _check_workloads(names)
    unique: dict[str, Point] = {}
    for pt in points:
        unique.setdefault(pt.key, pt)

    results: dict[str, dict[str, Any]] = {}
    store: Store | None = None
    if out is not None:
        path = Path(out)
        check_store_path(path)
        store = Store(path)  # locked before the file is read or repaired
    total = len(unique)
    failed = 0

    def report_progress() -> None:
        if progress is not None:
            progress(len(results), failed, total)

    def record(rec: dict[str, Any]) -> None:
        nonlocal failed
        if store is not None:
            store.append(rec)
        results[rec["key"]] = rec
        failed += rec.get("status") != "ok"
        report_progress()

    def sync() -> None:
        if store is not None:
            store.sync()

    try:
        if store is not None and not resume:
            store.truncate()
        elif store is not None:
            for rec in iter_records(store.path, repair=True):  # streamed: bounded memory
                if rec.get("key") in unique and rec["key"] not in results:
                    results[rec["key"]] = rec
                    failed += rec.get("status") != "ok"
        report_progress()
        todo = [pt for pt in unique.values() if pt.key not in results]
        for pt in todo:
            if pt.task is None:
                record(_error_record(pt, arch.name, data, seed))
        sync()
        tasks = [pt.task for pt in todo if pt.task is not None]
        if tasks:
            _execute(executor, tasks, record, sync)
    finally:
        if store is not None:
            store.close()
    return [results[pt.key] for pt in unique.values() if pt.key in results]


def _execute(executor: Any, tasks: list[dict[str, Any]],
             record: Callable[[dict[str, Any]], None], sync: Callable[[], None]) -> None:
    """Run tasks on the given executor (or an owned local pool), the same loop for all."""
    client = executor if is_dask_client(executor) else None
    owned = executor is None
    if owned:
        executor = local_executor(min(default_workers(), len(tasks)))
    elif client is not None:
        executor = client.get_executor(pure=False)
    elif not isinstance(executor, cf.Executor):
        raise PacimError("executor must be None, a concurrent.futures.Executor or a "
                         f"dask.distributed.Client; got {type(executor).__name__}")
    window = 2 * _slots(executor, client)
    clean = False
    try:
        _run_tasks(executor, group_tasks(tasks), window, record, sync)
        clean = True
    finally:
        if owned:
            shutdown_executor(executor, clean)


def shutdown_executor(executor: cf.Executor, clean: bool) -> None:
    """Shut a pool down; after Ctrl-C or a failure (clean=False), stop its workers at once."""
    if clean:
        executor.shutdown(wait=True)
        return
    executor.shutdown(wait=False, cancel_futures=True)
    procs = getattr(executor, "_processes", None) or {}
    for p in list(procs.values()):
        with contextlib.suppress(Exception):
            p.terminate()
