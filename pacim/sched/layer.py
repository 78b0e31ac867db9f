"""One layer on the chip: its formats and homes, its traffic in closed form, and its events.

The events (program.py) give the cycles, stalls and busy cycles; every bit moved is a sum over
passes of per-pass totals that are linear in the layer's vector totals, so traffic is computed
per pass kind, times how many passes have that kind. See docs/SCHEDULER.md.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from ..arch import Arch
from ..errors import PacimError
from ..macro.stats import MacroStats
from ..workloads.ir import Layer
from .counts import LayerCounts, empty_traffic
from .engine import Engine
from .mapping import (
    Mapping,
    PassKind,
    counts_stored,
    group_sizes,
    kernel_taps,
    layer_is_exact,
    map_layer,
    precision,
)
from .program import STALL_CAUSES, LayerProgram
from .steady import Steady
from .timing import cycle_mix, pac_lut
from .vectors import Totals, VectorSums, in_pixels

DEFAULT_BATCH = 32  # input vectors per event (the event granularity, not a hardware size)
# Refused up front beyond this many simulated events: ~5 minutes at the ~2 us per event measured
# on the shared 2-core development machine (benchmarks/bench_sched.py: us_per_event).
MAX_SIMULATED_EVENTS = 1 << 27
EVENTS_PER_STEP = 9  # at most: weight load, 2 main fetches, fetch, compute, pac, encode, 2 wb
__all__ = ["DEFAULT_BATCH", "MAX_SIMULATED_EVENTS", "STALL_CAUSES", "LayerPlan", "check_work",
           "plan_layer", "schedule_layer", "schedule_plan", "simulated_events_bound"]


def _home(bits: int, arch: Arch) -> str:
    """Where a feature map lives: the global buffer if it fits in half of it, else main."""
    cap = arch.memory.global_buffer.size_kib * 8192
    return "global_buffer" if bits <= cap / 2 else "main"


@dataclass(frozen=True)
class LayerPlan:
    """Everything one layer's schedule depends on, before any event."""

    name: str
    mapping: Mapping
    sums: VectorSums
    totals: Totals
    exact: bool
    in_home: str
    out_home: str
    in_kind: str  # data kind of the input in memory
    bank_kind: str  # data kind the bank buffers receive
    in_bits: int  # bits per input element in memory
    group_bits: tuple[int, int, int]  # input count bits per pixel: (groups, each, last group)
    fetch_count_planes: int
    x_planes: int
    xbit: int
    out_planes: int
    out_cnt_pp: int  # output count bits per output pixel
    enc_planes: int
    psum_width: int
    bit_serial: bool
    step: int  # bp_bs activation steps per vector
    cycles_per_step: int
    bus_main: int
    bus_gb: int
    bus_bb: int
    engine_ops: float
    encoder_bits: float

    def count_bits(self, kind: PassKind) -> int:
        """Input count bits per pixel a pass of `kind` fetches (its count groups)."""
        count, each, last = self.group_bits
        if count == 1:
            return last
        return (kind.rows_present - kind.last_row) * each + kind.last_row * last


def plan_layer(arch: Arch, layer: Layer, stats: MacroStats | None, prev_layer: Layer | None,
               next_layer: Layer | None, exact: bool | None, next_exact: bool | None,
               batch: int) -> LayerPlan:
    """Formats, homes, mapping and vector sums of one mapped layer."""
    m, pac, mem = arch.macro, arch.pac, arch.memory
    if exact is None:
        exact = layer_is_exact(arch, layer)
    if next_exact is None:
        next_exact = (not pac.enabled) or (next_layer is not None and next_layer.exact)
    prec = precision(arch, exact)
    mp = map_layer(arch, layer, prec)
    xbit, k, v = m.xbit, layer.k, layer.vectors

    in_enc = pac.sparsity_encoder and not exact and prev_layer is not None
    in_bits = prec.x_planes if in_enc else xbit
    in_cnt = in_enc and prec.counts
    count, each, last = mp.groups
    per = prec.x_lsb_planes if in_cnt else 0
    group_bits = (count, per * each.bit_length(), per * last.bit_length())
    all_groups = (count - 1) * group_bits[1] + group_bits[2]
    in_home = "main" if prev_layer is None else _home(
        in_pixels(layer) * (mp.channels * in_bits + all_groups), arch)
    fetch_count_planes = 0
    if prec.counts:  # the fetch path counts the planes that arrive as bits
        fetch_count_planes = prec.x_count_planes - (prec.x_lsb_planes if in_enc else 0)

    out_enc = pac.enabled and pac.sparsity_encoder and not next_exact
    out_planes = min(pac.operand, xbit) if out_enc else xbit
    out_cnt_on = out_enc and counts_stored(arch)
    khw_next = kernel_taps(next_layer) if next_layer is not None else 1
    oc, oe, ol = group_sizes(arch, k, khw_next) if pac.scope == "bank" else (1, k, k)
    out_cnt_pp = (xbit - out_planes) * ((oc - 1) * oe.bit_length() + ol.bit_length()) \
        if out_cnt_on else 0
    out_home = _home(v * (k * out_planes + out_cnt_pp), arch)

    mix = cycle_mix(arch, layer, stats, exact)
    # PAC-engine count products per output (see pacim.macro.core.pac_products)
    lut = pac_lut(arch) if prec.w_count_planes and m.kind == "bit_serial" else None
    sums = VectorSums(layer, mix, lut, batch)
    return LayerPlan(
        name=layer.name, mapping=mp, sums=sums, totals=sums.totals(), exact=exact,
        in_home=in_home, out_home=out_home, in_kind="act_msb" if in_enc else "act_full",
        bank_kind="act_msb" if prec.x_planes < xbit else "act_full", in_bits=in_bits,
        group_bits=group_bits, fetch_count_planes=fetch_count_planes, x_planes=prec.x_planes,
        xbit=xbit, out_planes=out_planes, out_cnt_pp=out_cnt_pp,
        enc_planes=(xbit - out_planes) if out_cnt_on else 0, psum_width=mp.psum_width,
        bit_serial=m.kind == "bit_serial", step=xbit if m.kind == "bp_bs" else 1,
        cycles_per_step=m.cycles_per_step, bus_main=mem.main.bus_bits,
        bus_gb=mem.global_buffer.bus_bits, bus_bb=mem.bank_buffer.bus_bits,
        engine_ops=pac.engine_ops_per_cycle, encoder_bits=pac.encoder_bits_per_cycle)


def simulated_events_bound(plan: LayerPlan, opts: Steady, traced: bool) -> int:
    """About how many events the engine will process for this layer: every one with a trace or
    without extrapolation; else a few periods of each run of passes, and of a uniform pass only
    the batches before its steady state is found."""
    mp, nb = plan.mapping, plan.sums.batches
    if traced or not opts.enabled:
        return mp.pass_count * nb * EVENTS_PER_STEP
    warm = opts.patience + opts.min_skip + 4 * opts.margin
    per_pass = min(nb, warm) if plan.sums.uniform else nb
    passes = sum(min(r.passes, 3 * len(r.kinds) + 2) for r in mp.runs)
    return passes * per_pass * EVENTS_PER_STEP


def check_work(plan: LayerPlan, opts: Steady, traced: bool) -> None:
    """PacimError when the layer's events cannot be simulated in reasonable time."""
    est = simulated_events_bound(plan, opts, traced)
    if est > MAX_SIMULATED_EVENTS:
        mp = plan.mapping
        raise PacimError(
            f"layer {plan.name}: scheduling it means simulating about {est:.3g} events "
            f"({mp.pass_count:,} passes x {plan.sums.batches:,} batches of {plan.sums.batch} "
            f"vectors{', every event traced' if traced else ''}), over the scheduler's limit "
            f"of {MAX_SIMULATED_EVENTS:.3g} (about 5 minutes); "
            + ("drop the trace or shrink the layer" if traced else "shrink the layer"))


def _traffic(plan: LayerPlan) -> tuple[dict, dict, int, int]:
    """(reads, writes, pac_ops, encoder_bits) of the layer: per pass kind x its passes."""
    reads, writes = empty_traffic(), empty_traffic()
    t, nb = plan.totals, plan.sums.batches
    mult: dict[PassKind, int] = {}
    for run in plan.mapping.runs:
        for kd in run.kinds:
            mult[kd] = mult.get(kd, 0) + run.repeat
    pac_ops = enc_bits = 0
    for kd, n in mult.items():
        cnt_pp = plan.count_bits(kd)
        act = t.new_pixels * kd.channels * plan.in_bits
        out = t.vectors * kd.done_cols
        items = [
            (reads, "global_buffer", plan.in_kind, act),
            (reads, "global_buffer", "sparsity_counts", t.new_pixels * cnt_pp),
            (reads, "global_buffer", "psums", t.vectors * kd.resume_cols * plan.psum_width),
            (writes, "global_buffer", "psums", t.vectors * kd.spill_cols * plan.psum_width),
            (writes, "bank_buffer", plan.bank_kind,
             (t.row_starts * kd.rows_sum + (t.vectors - t.row_starts) * kd.new_rows_sum)
             * plan.x_planes),
            (reads, "bank_buffer", plan.bank_kind, t.vectors * kd.rows_sum * plan.x_planes),
            (writes, "bank_buffer", "outputs", out * plan.xbit),
            (reads, "bank_buffer", "outputs", out * plan.xbit),
            (writes, plan.out_home, "outputs", out * plan.out_planes),
            (writes, plan.out_home, "sparsity_counts",
             t.vectors * plan.out_cnt_pp if kd.last else 0),
            (reads, "main", "weights", kd.weight_bits),
            (reads, "main", "w_counts", kd.wcount_bits),
            (writes, "bank_buffer", "w_counts", kd.wcount_bits),
            (reads, "bank_buffer", "w_counts", nb * kd.wcount_bits),  # per column per batch
        ]
        if plan.in_home == "main":
            main_act = t.main_pixels * kd.channels * plan.in_bits
            items += [
                (reads, "main", plan.in_kind, main_act),
                (reads, "main", "sparsity_counts", t.main_pixels * cnt_pp),
                (writes, "global_buffer", plan.in_kind, main_act),
                (writes, "global_buffer", "sparsity_counts", t.main_pixels * cnt_pp),
            ]
        for acc, lv, kind, bits in items:
            acc[lv][kind] += n * bits
        pac_ops += n * t.pac_products * kd.pac_cols
        enc_bits += n * (out * plan.enc_planes
                         + t.new_pixels * kd.channels * plan.fetch_count_planes)
    return reads, writes, pac_ops, enc_bits


def schedule_layer(
    arch: Arch,
    layer: Layer,
    stats: MacroStats | None = None,
    *,
    prev_layer: Layer | None = None,
    next_layer: Layer | None = None,
    exact: bool | None = None,
    next_exact: bool | None = None,
    batch: int = DEFAULT_BATCH,
    trace: object | None = None,
    steady: Steady | bool = True,
) -> LayerCounts:
    """Schedule one mapped layer; returns its counts (cycles from its first event to its last).

    prev_layer None means the input is the network input (full words from main memory);
    otherwise it was written back by the chip (encoded when the sparsity encoder is on).
    exact defaults to layer.exact or PAC off; next_exact (does the consumer need full words)
    to next_layer.exact or PAC off. `trace` (a list, or anything with `extend`) receives one
    tuple per event (TRACE_COLUMNS), in event order per batch, layer-relative times.
    `steady` (True, False or Steady) extrapolates periodic stretches exactly (never with a
    trace). Memory is O(a few batches of events) at any layer size.
    """
    if not layer.mapped:
        raise ValueError(f"layer {layer.name}: {layer.kind} layers are not mapped to the macro")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    opts = steady if isinstance(steady, Steady) else Steady(enabled=bool(steady))
    plan = plan_layer(arch, layer, stats, prev_layer, next_layer, exact, next_exact, batch)
    check_work(plan, opts, trace is not None)
    return schedule_plan(arch, plan, trace, opts)


def schedule_plan(arch: Arch, plan: LayerPlan, trace: object | None = None,
                  steady: Steady | None = None) -> LayerCounts:
    """Run a planned layer's events (schedule_layer without the checks)."""
    was_enabled = gc.isenabled()
    gc.disable()  # linked tasks: the cyclic GC would rescan them all
    try:
        return _run(arch, plan, trace, steady or Steady())
    finally:
        if was_enabled:
            gc.enable()


def _run(arch: Arch, plan: LayerPlan, trace: object | None, opts: Steady) -> LayerCounts:
    m = arch.macro
    eng = Engine()
    eng.resource("main", "bus")
    eng.resource("global_buffer", "bus")
    eng.resource("pac_engine", "pac_engine")
    eng.resource("encoder", "encoder")
    banks = [eng.resource(f"bank{i}", "bank") for i in range(m.banks)]
    prog = LayerProgram(eng, plan, banks, trace, opts)
    end = eng.run(prog)
    if trace is not None:
        prog.flush(final=True)
    stalls = dict(prog.stalls)
    stalls["drain"] += end - prog.prev_end
    busy_all = sum(b.busy for b in banks)
    reads, writes, pac_ops, enc_bits = _traffic(plan)
    mp, t = plan.mapping, plan.totals
    v, k, n = t.vectors, mp.k, mp.n
    tiles = mp.tiles
    cyc_sum = t.cycles
    bs = plan.bit_serial
    res = eng.resources
    return LayerCounts(
        name=plan.name,
        cycles=int(end),
        compute_cycles=int(prog.compute),
        stall_cycles=stalls,
        bank_utilization=busy_all / (m.banks * end) if end else 0.0,
        passes=mp.pass_count,
        weight_reloads=mp.weight_reloads,
        vector_tiles=v * tiles,
        bit_serial_cycles_baseline=v * tiles * m.xbit * m.wbit,
        bit_serial_cycles=tiles * (cyc_sum if bs else v * plan.step),
        column_cycles=k * mp.row_tiles * cyc_sum if bs else 0,
        active_row_cycles=n * k * cyc_sum if bs else 0,
        bpbs_conversions=0 if bs else k * m.wbit * mp.row_tiles * v * plan.step,
        pac_ops=pac_ops,
        encoder_bits=enc_bits,
        weight_bits_written=sum(kd.weight_bits * r.repeat for r in mp.runs for kd in r.kinds),
        psum_bits=v * k * (mp.row_tiles - 1) * mp.psum_width,
        reads_bits=reads,
        writes_bits=writes,
        events=eng.done,
        exact=plan.exact,
        row_tiles=mp.row_tiles,
        col_tiles=mp.col_tiles,
        input_home=plan.in_home,
        output_home=plan.out_home,
        digital_cycles_mean=cyc_sum / v if v else 0.0,
        busy_cycles={"banks": busy_all, "main": res["main"].busy,
                     "global_buffer": res["global_buffer"].busy,
                     "pac_engine": res["pac_engine"].busy, "encoder": res["encoder"].busy},
        simulated_events=eng.done - (prog.detector.skipped_events if prog.detector else 0),
    )

