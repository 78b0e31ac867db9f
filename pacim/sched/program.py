"""One layer's events, created step by step as the engine needs them (a step = one vector batch
of one pass) and retired as they end: the scheduler's memory is O(a few steps), not O(events).

Per pass: a weight load (main memory -> banks), then for every batch of input vectors a pipeline
of events with double-buffered activations and outputs:

    [main -> line buffer] -> act_fetch (global buffer -> bank buffers, + counts, + psums)
        -> compute (one event per tile group on its banks)  \
        -> pac (PAC engine, beside the banks)                -> encode -> write_back
A batch's fetch may start once the compute two batches back has freed its input buffer; a
batch's compute may start once the write-back two batches back has freed its output buffer.
Bank 0's stalls are charged as its computes retire; steady-state periods are skipped by
steady.Detector at the anchor computes this program marks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import INF_STEP, Engine, Resource, Task
from .mapping import PassKind
from .steady import Detector, Steady

if TYPE_CHECKING:
    from .layer import LayerPlan

ROLES = ("weight_load", "main_fetch", "line_buffer", "act_fetch", "compute", "pac", "encode",
         "write_back", "write_main")
W, MF, LB, GF, C, PAC, ENC, WB, WM = range(len(ROLES))
STALL_CAUSES = ("weight_load", "memory", "pac_engine", "encoder", "drain")
CHUNK = 2048  # batches whose per-batch durations are computed at once
LOOKAHEAD = 6  # steps created past the one being processed (dependencies reach 2 back)
RECENT = 32  # steps kept for the steady-state signature (live events span ~16)


def cdiv(a: Any, b: float) -> np.ndarray:
    """Ceil division of non-negative bit counts by a bandwidth (cycles, integer)."""
    return np.ceil(np.asarray(a, dtype=np.float64) / float(b)).astype(np.int64)


def records(plan: LayerPlan, kind: PassKind, s: dict[str, np.ndarray], bits: bool
            ) -> dict[str, list[int]]:
    """Per-batch durations (and, for a trace, bits) of the batches in `s` in a pass of `kind`."""
    nv, npx = s["nv"], s["new_pixels"]
    ch, cnt_pp = kind.channels, plan.count_bits(kind)
    act = npx * (ch * plan.in_bits)
    cnt = npx * cnt_pp
    psr = nv * (kind.resume_cols * plan.psum_width)
    psw = nv * (kind.spill_cols * plan.psum_width)
    rs = s["row_starts"]
    bb = np.max([(rs * r + (nv - rs) * nr) * plan.x_planes for r, nr in kind.shapes], axis=0)
    out = nv * kind.done_cols
    outmem = out * plan.out_planes
    ocnt = nv * plan.out_cnt_pp if kind.last else 0 * nv
    ops = s["pairs"] * kind.pac_cols
    encb = out * plan.enc_planes
    gf_bits, wb_bits, wm_bits = act + cnt + psr, outmem + ocnt + psw, outmem + ocnt
    comp = s["cycles"] if plan.bit_serial else nv * plan.step
    r: dict[str, Any] = {
        "nv": nv,
        "gf": np.maximum(cdiv(gf_bits, plan.bus_gb), cdiv(bb, plan.bus_bb)),
        "c": comp * plan.cycles_per_step,
        "p": cdiv(ops, plan.engine_ops),
        "e": cdiv(encb, plan.encoder_bits),
        "wb": cdiv(wb_bits, plan.bus_gb),
        "wm": cdiv(wm_bits, plan.bus_main),
    }
    if plan.in_home == "main":
        mf_bits = s["main_pixels"] * (ch * plan.in_bits) + s["main_pixels"] * cnt_pp
        r.update(mf=cdiv(mf_bits, plan.bus_main), lb=cdiv(mf_bits, plan.bus_gb))
        if bits:
            r["mf_bits"] = mf_bits
    if bits:
        r.update(gf_bits=gf_bits, wb_bits=wb_bits, wm_bits=wm_bits, ops=ops, encb=encb)
    return {k: v.tolist() for k, v in r.items()}


class LayerProgram:
    """The event program of one mapped layer (engine.Source, steady.Program)."""

    def __init__(self, eng: Engine, plan: LayerPlan, banks: list[Resource],
                 trace: Any | None, steady: Steady) -> None:
        self.eng, self.plan, self.banks, self.trace = eng, plan, banks, trace
        self.mp = plan.mapping
        self.sums = plan.sums
        self.nb = self.sums.batches
        self.total = self.nb * self.mp.pass_count
        self.created = -1
        self.r_main, self.r_gb = eng.resource("main", "bus"), eng.resource("global_buffer", "bus")
        self.r_pac = eng.resource("pac_engine", "pac_engine")
        self.r_enc = eng.resource("encoder", "encoder")
        self.run_starts = self.mp.run_starts()
        self._hist: list[Task | None] = [None] * 7  # mf1, gf1, gf2, c1, c2, wb1, wb2
        self._p1: Task | None = None
        self._recent: deque[list[Task]] = deque(maxlen=RECENT)
        self._rows: deque[list[Task]] = deque()  # steps whose trace rows are not written yet
        self._rec_cache: OrderedDict[tuple, dict[str, list[int]]] = OrderedDict()
        self._sum_cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.compute = 0
        self.stalls = dict.fromkeys(STALL_CAUSES, 0)
        self.prev_end = 0
        use = steady.enabled and trace is None
        self.detector = Detector(eng, self, steady) if use else None
        self.min_skip = steady.min_skip + 2 * steady.margin if use else INF_STEP
        self._pass = -1
        self._in_main = plan.in_home == "main"
        self._out_main = plan.out_home == "main"

    # --- engine.Source ------------------------------------------------------------------------
    def ensure(self, step: int) -> int:
        """Create steps up to `step` + LOOKAHEAD; the last step safe to process."""
        target = min(step + LOOKAHEAD, self.total - 1)
        while self.created < target:
            self._step(self.created + 1)
        return self.safe()

    def safe(self) -> int:
        """Steps up to this one may be processed (their dependents exist)."""
        return INF_STEP if self.created >= self.total - 1 else self.created - 2

    # --- pass context -------------------------------------------------------------------------
    def _run_of(self, p: int) -> int:
        lo, hi = 0, len(self.run_starts) - 1
        while lo < hi:  # last run starting at or before p
            mid = (lo + hi + 1) // 2
            if self.run_starts[mid] <= p:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _enter(self, p: int) -> None:
        """Set up pass p: its kind, banks, and which of its steps are anchors."""
        ri = self._run_of(p)
        run, r0 = self.mp.runs[ri], self.run_starts[ri]
        kind = run.kinds[(p - r0) % len(run.kinds)]
        self._pass, self._kind = p, kind
        self._run_end = r0 + run.passes
        self._group = tuple(self.banks[: kind.tiles])
        self._use_p = kind.pac_cols > 0 and self.plan.totals.pac_products > 0
        self._use_e = kind.done_cols > 0 and self.plan.enc_planes > 0
        w_bits = kind.weight_bits + kind.wcount_bits  # main -> banks / count store, own path
        self._w = (int(cdiv(w_bits, self.plan.bus_main)), w_bits)
        self._chunk = -1
        if self.detector is not None:
            self.detector.reset()
        # anchors: a pass start inside a long periodic run; a batch inside a long uniform run
        self._anchor_pass = run.passes > 1 and (self._run_end - p) * self.nb >= self.min_skip
        self._uniform_end = self.sums.full_batches if self.sums.uniform else 0
        if self.trace is not None:
            ps = self.mp.pass_at(p)
            nt = len(ps.tiles)
            self._labels = (f"p{p}", "bank0" if nt == 1 else f"bank0-{nt - 1}",
                            "+".join(f"r{t.row}c{t.col}" for t in ps.tiles))

    def _load(self, chunk: int) -> None:
        """Per-batch records of the current pass kind for batches [chunk*CHUNK, +CHUNK)."""
        key = (self._kind, chunk)
        rec = self._rec_cache.get(key)
        if rec is None:
            s = self._sum_cache.get(chunk)
            if s is None:
                s = self._sum_cache[chunk] = self.sums.sums(chunk * CHUNK,
                                                            min(self.nb, (chunk + 1) * CHUNK))
                if len(self._sum_cache) > 2:
                    self._sum_cache.popitem(last=False)
            rec = self._rec_cache[key] = records(self.plan, self._kind, s, self.trace is not None)
            if len(self._rec_cache) > 16:
                self._rec_cache.popitem(last=False)
        self._chunk, self._rec = chunk, rec

    # --- one step -----------------------------------------------------------------------------
    def _step(self, s: int) -> None:
        p, j = divmod(s, self.nb)
        if p != self._pass:
            self._enter(p)
        ch, ci = divmod(j, CHUNK)
        if ch != self._chunk:
            self._load(ch)
        rec, add = self._rec, self.eng.add
        mf1, gf1, gf2, c1, c2, wb1, wb2 = self._hist
        meta = self._meta(j, ci) if self.trace is not None else None
        tasks: list[Task] = []
        w = None
        if j == 0:
            w = add("weight_load", (self.r_main,), self._w[0], (c1,),
                    meta and meta[W], s, W)
            tasks.append(w)
        mf = None
        if self._in_main:  # main -> line buffer: the main bus, then a gb write
            m1 = add("act_fetch", (self.r_main,), rec["mf"][ci], (mf1, gf2), meta and meta[MF],
                     s, MF)
            mf = add("act_fetch", (self.r_gb,), rec["lb"][ci], (m1,), meta and meta[LB], s, LB)
            tasks += (m1, mf)
        gf = add("act_fetch", (self.r_gb,), rec["gf"][ci], (mf, gf1, c2), meta and meta[GF],
                 s, GF)
        deps = (gf, wb2, w, c1) if j == 0 else (gf, wb2, c1)
        anchor = (j == 0 and self._anchor_pass) or (
            0 < j and self._uniform_end - j >= self.min_skip)
        # the pass's tiles sit on banks 0..nt-1 with identical deps and durations, so they run
        # in lockstep: one event holding all of them is exact and nt times cheaper
        c = add("compute", self._group, rec["c"][ci], deps, meta and meta[C], s, C,
                self._on_anchor if anchor else self._on_compute)
        tasks += (gf, c)
        pt = et = None
        if self._use_p:
            pt = self._p1 = add("pac", (self.r_pac,), rec["p"][ci], (gf, self._p1),
                                meta and meta[PAC], s, PAC)
            tasks.append(pt)
        if self._use_e:
            et = add("encode", (self.r_enc,), rec["e"][ci], (c, pt), meta and meta[ENC], s, ENC)
            tasks.append(et)
        wb = add("write_back", (self.r_gb,), rec["wb"][ci], (et,) if et is not None else (c, pt),
                 meta and meta[WB], s, WB)
        tasks.append(wb)
        if self._out_main:  # across the global-buffer bus, then the main bus
            wb = add("write_back", (self.r_main,), rec["wm"][ci], (wb,), meta and meta[WM], s, WM)
            tasks.append(wb)
        wb.path = (pt, et)
        self._hist = [mf, gf, gf1, c, c1, wb, wb1]
        self.created = s
        self._recent.append(tasks)
        if self.trace is not None:
            self._rows.append(tasks)
            self.flush()

    def _meta(self, j: int, ci: int) -> list[tuple]:
        """Trace fields (resource, tile, pass, first vector, vectors, bits) per role."""
        rec, p = self._rec, self._pass
        plbl, banks, tiles = self._labels
        v0, nv = j * self.sums.batch, rec["nv"][ci]

        def m(res: str, key: str | None) -> tuple:
            return (res, plbl, p, v0, nv, rec[key][ci] if key else 0)

        return [("main", plbl, p, 0, 0, self._w[1]),
                m("main", "mf_bits") if "mf_bits" in rec else None,
                m("global_buffer", "mf_bits") if "mf_bits" in rec else None,
                m("global_buffer", "gf_bits"), (banks, tiles, p, v0, nv, 0),
                m("pac_engine", "ops"), m("encoder", "encb"), m("global_buffer", "wb_bits"),
                m("main", "wm_bits")]

    def flush(self, final: bool = False) -> None:
        """Write the trace rows of the oldest steps whose events have all been processed."""
        rows = self._rows
        name = self.plan.name
        while rows and (final or all(t.start >= 0 for t in rows[0])):
            self.trace.extend((t.start, t.end, res, t.kind, name, tile, nvec, p_i, v0, bits)
                              for t in rows.popleft()
                              for res, tile, p_i, v0, nvec, bits in (t.meta,))

    # --- compute retirement: bank 0's stalls ----------------------------------------------------
    def _on_compute(self, t: Task) -> bool:
        gap = t.start - self.prev_end
        if gap > 0:
            self.stalls[self.cause(t)] += gap
        self.prev_end = t.end
        self.compute += t.duration
        return False

    def _on_anchor(self, t: Task) -> bool:
        self._on_compute(t)
        return self.detector is not None and self.detector.visit(t)

    def cause(self, t: Task) -> Hashable:
        """Why bank 0 waited before compute t: the dependency that ended last, and if that was
        a write-back (output buffer still full), the slowest stage of that output path."""
        if t.role != C:
            return None
        crit = t.critical
        if crit is None or crit.kind == "weight_load":
            return "weight_load"
        if crit.kind == "write_back":
            pt, et = crit.path
            stages = [(crit.duration + crit.waited, "memory")]
            if et is not None:
                stages.append((et.duration + et.waited, "encoder"))
            if pt is not None:
                stages.append((pt.duration + pt.waited, "pac_engine"))
            return max(stages)[1]
        return "memory"

    # --- steady.Program -----------------------------------------------------------------------
    def recent(self) -> Sequence[Sequence[Task]]:
        """Tasks of the most recent steps, oldest first."""
        return self._recent

    def extent(self, start: int, period: int) -> int:
        """Steps t in [start, hi) have the input of step t - period: whole passes of a periodic
        run of pass kinds, or batches inside one pass's run of identical (uniform) batches."""
        nb = self.nb
        if start < period:
            return start
        if period % nb == 0:
            p0, lp = start // nb, period // nb
            ri = self._run_of(p0)
            run, r0 = self.mp.runs[ri], self.run_starts[ri]
            if lp % len(run.kinds) == 0 and p0 - lp >= r0:
                return (r0 + run.passes) * nb
            return start
        if self.sums.uniform:
            base = start // nb * nb
            if start - period >= base + 1:
                return max(start, base + self.sums.full_batches)
        return start

    def periods(self, step: int) -> Sequence[int]:
        """The period of the pass run holding this step (in steps)."""
        ri = self._run_of(step // self.nb)
        run = self.mp.runs[ri]
        return (len(run.kinds) * self.nb,) if run.repeat > 1 and len(run.kinds) > 1 else ()

    def skip(self, steps: int) -> None:
        """Continue `steps` further on (the detector relabelled the existing tasks)."""
        self.created += steps
        nxt = self.created + 1
        if nxt < self.total:
            p = nxt // self.nb
            if p != self._pass:
                self._enter(p)
            self._chunk = -1

    def counters(self) -> tuple[int, ...]:
        """Compute cycles and stall cycles by cause (cumulative)."""
        return (self.compute, *self.stalls.values())

    def advance(self, periods: int, deltas: tuple[int, ...], shift: int) -> None:
        """Extrapolate the counters over `periods` periods; shift the last compute's end and a
        retired PAC event the next one will wait for."""
        self.compute += periods * deltas[0]
        for k, d in zip(STALL_CAUSES, deltas[1:], strict=True):
            self.stalls[k] += periods * d
        self.prev_end += shift
        if self._p1 is not None and self._p1.succ is None:
            self._p1.end += shift

    def relative(self, now: int) -> tuple[int, ...]:
        """The last compute's end and a retired PAC event's end (the PAC chain may skip
        passes without PAC work), relative to now."""
        p1 = self._p1  # an end at or before now bounds nothing still to come
        return (self.prev_end - now,
                max(0, p1.end - now) if p1 is not None and p1.succ is None else 0)
