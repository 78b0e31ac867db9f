"""Parameter sweeps: grid expansion, one scheduling loop over any executor, resumable JSONL.

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
import hashlib
import importlib
import itertools
import json
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .arch import Arch, load_arch
from .errors import PacimError
from .report import flatten, json_safe

SweepProgress = Callable[[int, int, int], None]  # (done, failed, total)
SimulateFn = Callable[..., Any]

DASK_HINT = "pip install 'pacim[dask]'"

# Headline figures of a record, in column order (None when the report lacks them).
METRICS = (
    "macs", "mapped_macs", "ops", "cycles", "latency_s", "throughput_tops",
    "peak_throughput_tops", "energy_pj", "tops_per_w", "peak_tops_per_w", "reads_bits",
    "writes_bits", "bit_serial_cycles_baseline", "bit_serial_cycles", "bit_serial_reduction",
    "energy_memory_share", "digital_cycles_mean", "sqnr_db", "output_rmse",
)


# --- grid ---------------------------------------------------------------------------------
def expand_grid(
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Cartesian product of {dotted key: values} (first key varies slowest), or a list as is."""
    if isinstance(grid, Mapping):
        keys = list(grid)
        values = []
        for k in keys:
            v = grid[k]
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                raise PacimError(f"grid {k}: expected a list of values, got {v!r}")
            v = list(v)
            if not v:
                raise PacimError(f"grid {k}: empty list of values")
            values.append(v)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    points = []
    for i, ov in enumerate(grid):
        if not isinstance(ov, Mapping):
            raise PacimError(f"grid point {i}: expected a dict of overrides, got {ov!r}")
        points.append(dict(ov))
    return points


def split_values(text: str) -> list[str]:
    """'1,2,[3, 4]' -> ['1', '2', '[3, 4]']: commas split at bracket depth 0, outside quotes."""
    out: list[str] = []
    depth, quote, cur = 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_grid_option(item: str) -> tuple[str, list[Any]]:
    """'pac.operand=2,3,4' -> ('pac.operand', [2, 3, 4]) (values parsed as YAML)."""
    from .arch import parse_value, split_assignment

    key, vals = split_assignment(item, "--grid", "key.path=v1,v2,...")
    parts = split_values(vals)
    if any(p == "" for p in parts):
        raise PacimError(f"--grid {item!r} has an empty value")
    return key, [parse_value(p) for p in parts]


# --- points -------------------------------------------------------------------------------
def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def workload_id(name: str) -> str:
    """A workload's identity for the key: the name, plus a content hash when it is a file."""
    p = Path(name)
    if p.is_file():
        return f"{name}#{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}"
    return name


def point_key(arch_dict: Mapping[str, Any], workload: str, data: bool, seed: int) -> str:
    """Hash of a point's full config: resolved arch dict + workload + data + seed."""
    return _digest({"arch": arch_dict, "workload": workload, "data": bool(data),
                    "seed": int(seed)})


@dataclass(frozen=True)
class Point:
    """One sweep point: what to run (task) or why it cannot run (error)."""

    key: str
    overrides: dict[str, Any]
    workload: str
    task: dict[str, Any] | None  # None when the overrides do not give a valid arch
    error: str | None = None


def make_points(
    arch: Arch, overrides: Sequence[Mapping[str, Any]], workloads: Sequence[str], data: bool,
    seed: int, simulate_fn: SimulateFn | None = None,
) -> list[Point]:
    """Resolve each (workload, overrides) into a Point; invalid overrides become error points."""
    base = arch.to_dict()
    ids = {w: workload_id(w) for w in workloads}
    points: list[Point] = []
    for wl in workloads:
        for ov in overrides:
            ov = dict(ov)
            try:
                resolved = arch.with_overrides(ov).to_dict()
            except (PacimError, ValueError, TypeError) as e:
                key = _digest({"base": base, "overrides": ov, "workload": ids[wl],
                               "data": bool(data), "seed": int(seed), "invalid": True})
                points.append(Point(key, ov, wl, None, f"{type(e).__name__}: {e}"))
                continue
            key = point_key(resolved, ids[wl], data, seed)
            task = {"key": key, "arch": resolved, "overrides": ov, "workload": wl,
                    "data": bool(data), "seed": int(seed)}
            if simulate_fn is not None:
                task["simulate"] = simulate_fn
            points.append(Point(key, ov, wl, task))
    return points


# --- the worker side ----------------------------------------------------------------------
_WORKLOADS: dict[tuple[str, bool, int], Any] = {}


def cached_workload(name: str, data: bool, seed: int) -> Any:
    """The workload built once per process (module-level cache keyed by name, data, seed)."""
    k = (name, bool(data), int(seed))
    wl = _WORKLOADS.get(k)
    if wl is None:
        from .workloads import load_workload

        wl = _WORKLOADS[k] = load_workload(name, data=data, seed=seed)
    return wl


def headline(report: Mapping[str, Any]) -> dict[str, Any]:
    """The flat headline figures of a simulate report dict (None where absent)."""
    bsc = report.get("bit_serial_cycles") or {}
    acc = report.get("accuracy") or {}
    mem = report.get("memory") or {}
    out: dict[str, Any] = {k: report.get(k) for k in METRICS}
    out.update(
        reads_bits=mem.get("reads_bits"),
        writes_bits=mem.get("writes_bits"),
        bit_serial_cycles_baseline=bsc.get("baseline"),
        bit_serial_cycles=bsc.get("actual"),
        bit_serial_reduction=bsc.get("reduction"),
        sqnr_db=acc.get("sqnr_db"),
        output_rmse=acc.get("output_rmse_vs_exact"),
    )
    breakdown = report.get("energy_breakdown_pj")
    if isinstance(breakdown, Mapping):
        out.update(flatten(dict(breakdown), "energy_pj."))
    return out


def _base_record(key: str, overrides: Mapping[str, Any], workload: str, arch_name: Any,
                 data: bool, seed: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": key, "status": "ok", "error": None, "workload": workload,
                           "arch": arch_name, "data": data, "seed": seed,
                           "overrides": dict(overrides)}
    for k, v in overrides.items():  # flat copies, for spreadsheets and `pacim plot --color`
        rec.setdefault(k, v)
    return rec


def run_point(task: Mapping[str, Any]) -> dict[str, Any]:
    """Simulate one point (in a worker); errors become an error record, never an exception."""
    t0 = time.perf_counter()
    rec = _base_record(task["key"], task["overrides"], task["workload"],
                       task["arch"].get("name"), task["data"], task["seed"])
    try:
        arch = Arch.model_validate(task["arch"])
        hook = task.get("simulate")
        if hook is not None:  # a test hook replacing load + simulate: gets the workload name
            report = hook(arch, task["workload"], data=task["data"], seed=task["seed"])
        else:
            from .pipeline import simulate

            wl = cached_workload(task["workload"], task["data"], task["seed"])
            report = simulate(arch, wl, data=task["data"], seed=task["seed"])
        d = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        rec.update(headline(d))
    except Exception as e:  # any failure of a point is that point's record
        rec["status"] = "error"
        rec["error"] = f"{type(e).__name__}: {e}"
    rec["sim_s"] = time.perf_counter() - t0
    return json_safe(rec)


def run_points(group: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Simulate a group of points in one worker, in order (see group_tasks)."""
    return [run_point(t) for t in group]


MAX_GROUP = 8  # points per task: bounds what a killed worker can lose


def _schedule_signature(task: Mapping[str, Any]) -> str:
    """What a point's schedule depends on: macro, pac, memory sizes/buses, workload, data."""
    a = task["arch"]
    mem = {lv: {k: v for k, v in cfg.items() if k in ("size_kib", "bus_bits")}
           for lv, cfg in a.get("memory", {}).items()}
    return _digest([a.get("macro"), a.get("pac"), mem, task["workload"], task["data"],
                    task["seed"]])


def group_tasks(tasks: Sequence[dict[str, Any]], max_group: int = MAX_GROUP
                ) -> list[list[dict[str, Any]]]:
    """Group points that share a schedule (e.g. differ only in VDD or energy values) into
    tasks of at most max_group points, in first-seen order: the worker that runs a group
    schedules it once and reuses the schedule (pacim.sched.schedule's cache)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        groups.setdefault(_schedule_signature(t), []).append(t)
    return [g[i : i + max_group] for g in groups.values() for i in range(0, len(g), max_group)]


def _init_worker() -> None:
    """Local workers ignore SIGINT: Ctrl-C is the parent's to handle (cancel, keep records)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- executors ----------------------------------------------------------------------------
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
    return cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker)


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


# --- the JSONL store ----------------------------------------------------------------------
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


class _Store:
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


# --- the sweep ----------------------------------------------------------------------------
def _error_record(pt: Point, arch_name: str, data: bool, seed: int) -> dict[str, Any]:
    rec = _base_record(pt.key, pt.overrides, pt.workload, arch_name, data, seed)
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
    from .workloads import available_workloads, load_workload

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
    _simulate: SimulateFn | None = None,
) -> list[dict[str, Any]]:
    """Simulate every (workload, grid point); returns one flat record per point.

    grid: {dotted arch key: [values]} (cartesian product) or a list of override dicts.
    executor: None (local processes, one per core), a concurrent.futures.Executor, or a
    dask.distributed.Client. out: JSONL appended as points finish; with resume, points whose
    key is already there are not run again (resume=False starts the file afresh).
    Records come back in (workload, grid) order; points with the same full config run once.
    progress(done, failed, total) is called as points finish.
    """
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    names = _as_names(workloads)
    _check_workloads(names)
    overrides = expand_grid(grid)
    points = make_points(arch, overrides, names, data, seed, _simulate)
    unique: dict[str, Point] = {}
    for pt in points:
        unique.setdefault(pt.key, pt)

    results: dict[str, dict[str, Any]] = {}
    store: _Store | None = None
    if out is not None:
        path = Path(out)
        if path.is_dir():
            raise PacimError(f"{path}: is a directory, not a file")
        store = _Store(path)  # locked before the file is read or repaired
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
            for rec in read_records(store.path, repair=True):
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


# --- analysis -----------------------------------------------------------------------------
def field_value(rec: Mapping[str, Any], name: str) -> Any:
    """A record's field: a top-level key, else an override (dotted arch key)."""
    if name in rec:
        return rec[name]
    return (rec.get("overrides") or {}).get(name)


def pareto_front(
    points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (False, False),
) -> list[int]:
    """Indices of the non-dominated points (minimizing both by default), sorted along x."""
    sx = -1.0 if maximize[0] else 1.0
    sy = -1.0 if maximize[1] else 1.0
    order = sorted(range(len(points)), key=lambda i: (sx * points[i][0], sy * points[i][1]))
    front: list[int] = []
    best = math.inf
    for i in order:
        y = sy * points[i][1]
        if y < best:
            front.append(i)
            best = y
    return front


__all__ = [
    "METRICS", "Point", "SerialExecutor", "cached_workload", "dask_client", "expand_grid",
    "field_value", "headline", "local_executor", "make_points", "pareto_front",
    "parse_grid_option", "point_key", "read_records", "run_point", "shutdown_executor", "sweep",
]
