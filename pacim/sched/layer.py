"""One layer on the chip: its passes and vector batches as events on banks, buses and engines.

Per pass: a weight load (main memory -> banks), then for every batch of input vectors a
pipeline of events with double-buffered activations and outputs:

    [main -> line buffer] -> act_fetch (global buffer -> bank buffers, + counts, + psums)
        -> compute (one event per tile on its bank)  \
        -> pac (PAC engine, beside the banks)         -> encode -> write_back
A batch's fetch may start once the compute two batches back has freed its input buffer; a
batch's compute may start once the write-back two batches back has freed its output buffer.
Every event's start and end are exact integer cycles (engine.py). See docs/SCHEDULER.md.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np

from ..arch import Arch
from ..macro.stats import MacroStats
from ..workloads.ir import Layer
from .counts import LayerCounts, empty_traffic
from .engine import Engine, Task
from .mapping import (
    Pass,
    count_groups,
    counts_stored,
    kernel_taps,
    layer_is_exact,
    map_layer,
    precision,
    window_reuse,
)
from .timing import digital_cycles, pac_products

DEFAULT_BATCH = 32  # input vectors per event (the event granularity, not a hardware size)
STALL_CAUSES = ("weight_load", "memory", "pac_engine", "encoder", "drain")


def _cdiv(a: np.ndarray | int, b: float) -> np.ndarray:
    """Ceil division of non-negative bit counts by a bandwidth (cycles, integer)."""
    return np.ceil(np.asarray(a, dtype=np.float64) / float(b)).astype(np.int64)


def _home(bits: int, arch: Arch) -> str:
    """Where a feature map lives: the global buffer if it fits in half of it, else main."""
    cap = arch.memory.global_buffer.size_kib * 8192
    return "global_buffer" if bits <= cap / 2 else "main"


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
    trace: list | None = None,
) -> LayerCounts:
    """Schedule one mapped layer; returns its counts (cycles from its first event to its last).

    prev_layer None means the input is the network input (full words from main memory);
    otherwise it was written back by the chip (encoded when the sparsity encoder is on).
    exact defaults to layer.exact or PAC off; next_exact (does the consumer need full words)
    to next_layer.exact or PAC off. `trace` receives one tuple per event (TRACE_COLUMNS).
    """
    if not layer.mapped:
        raise ValueError(f"layer {layer.name}: {layer.kind} layers are not mapped to the macro")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    was_enabled = gc.isenabled()
    gc.disable()  # tens of thousands of linked tasks: the cyclic GC would rescan them all
    try:
        return _schedule_layer(arch, layer, stats, prev_layer, next_layer, exact, next_exact,
                               batch, trace)
    finally:
        if was_enabled:
            gc.enable()


def _schedule_layer(
    arch: Arch,
    layer: Layer,
    stats: MacroStats | None,
    prev_layer: Layer | None,
    next_layer: Layer | None,
    exact: bool | None,
    next_exact: bool | None,
    batch: int,
    trace: list | None,
) -> LayerCounts:
    m, pac, mem = arch.macro, arch.pac, arch.memory
    if exact is None:
        exact = layer_is_exact(arch, layer)
    if next_exact is None:
        next_exact = (not pac.enabled) or (next_layer is not None and next_layer.exact)
    prec = precision(arch, exact)
    mp = map_layer(arch, layer, prec)
    reuse = window_reuse(layer)
    cyc = digital_cycles(arch, layer, stats, exact)
    v, k, n = layer.vectors, layer.k, layer.n
    xbit, wbit = m.xbit, m.wbit

    # --- formats and homes ------------------------------------------------------------------
    in_enc = pac.sparsity_encoder and not exact and prev_layer is not None
    in_bits = prec.x_planes if in_enc else xbit  # bits per input element in memory
    in_kind = "act_msb" if in_enc else "act_full"
    bank_kind = "act_msb" if prec.x_planes < xbit else "act_full"
    in_cnt = in_enc and prec.counts
    grp_bits = [prec.x_lsb_planes * c.bit_length() if in_cnt else 0 for c in mp.group_channels]
    in_home = "main" if prev_layer is None else _home(
        reuse.in_pixels * (mp.channels * in_bits + sum(grp_bits)), arch)
    fetch_count_planes = 0
    if prec.counts:  # the fetch path counts the planes that arrive as bits
        fetch_count_planes = prec.x_count_planes - (prec.x_lsb_planes if in_enc else 0)

    out_enc = pac.enabled and pac.sparsity_encoder and not next_exact
    out_planes = min(pac.operand, xbit) if out_enc else xbit
    out_cnt_on = out_enc and counts_stored(arch)
    khw_next = kernel_taps(next_layer) if next_layer is not None else 1
    out_groups = count_groups(arch, k, khw_next) if pac.scope == "bank" else (k,)
    out_cnt_pp = sum((xbit - out_planes) * g.bit_length() for g in out_groups) if out_cnt_on \
        else 0
    out_home = _home(v * (k * out_planes + out_cnt_pp), arch)
    enc_planes = (xbit - out_planes) if out_cnt_on else 0

    # --- batches ------------------------------------------------------------------------------
    starts = np.arange(0, v, batch, dtype=np.int64)
    nv = np.diff(np.append(starts, v))
    cyc_b = np.add.reduceat(cyc, starts)
    # PAC-engine count products per output (see pacim.macro.core.pac_products)
    pairs = pac_products(arch, cyc) if prec.w_count_planes and m.kind == "bit_serial" else 0 * cyc
    pairs_b = np.add.reduceat(pairs, starts)
    newpix_b = np.add.reduceat(reuse.new_pixels, starts)
    rs_b = np.add.reduceat(reuse.row_start.astype(np.int64), starts)
    mainpix_b = np.add.reduceat(reuse.main_pixels, starts)
    step = xbit if m.kind == "bp_bs" else 1
    comp_b = (cyc_b if m.kind == "bit_serial" else nv * step) * m.cycles_per_step

    bus_main, bus_gb, bus_bb = mem.main.bus_bits, mem.global_buffer.bus_bits, \
        mem.bank_buffer.bus_bits
    reads, writes = empty_traffic(), empty_traffic()
    enc_bits_total = 0

    eng = Engine()
    r_main = eng.resource("main", "bus")
    r_gb = eng.resource("global_buffer", "bus")
    r_pac = eng.resource("pac_engine", "pac_engine")
    r_enc = eng.resource("encoder", "encoder")
    banks = [eng.resource(f"bank{i}", "bank") for i in range(m.banks)]
    name = layer.name

    comp0: list[Task] = []  # bank 0's compute events, in order
    out_path: dict[int, tuple[Task | None, Task | None, Task]] = {}  # WB id -> (P, E, WB)
    mf_hist: list[Task | None] = [None, None]
    gf_hist: list[Task | None] = [None, None]
    c_hist: list[list[Task]] = [[], []]
    wb_hist: list[Task | None] = [None, None]
    p_prev: Task | None = None
    last_batch: list[Task] = []
    pac_ops = 0

    def profile(ps: Pass, last: bool) -> dict[str, Any]:
        """Per-batch bits and durations of a pass, plus its traffic (passes alike share it)."""
        tr: list[tuple[dict[str, dict[str, int]], str, str, int]] = []
        act_b = newpix_b * (ps.channels * in_bits)
        cnt_pp = sum(grp_bits[g] for g in ps.groups) if len(grp_bits) > 1 else grp_bits[0]
        cnt_b = newpix_b * cnt_pp
        psr_b = nv * (ps.resume_cols * mp.psum_width)
        psw_b = nv * (ps.spill_cols * mp.psum_width)
        bb_t = [(rs_b * t.rows + (nv - rs_b) * t.new_rows) * prec.x_planes for t in ps.tiles]
        out_b = nv * ps.done_cols
        outmem_b = out_b * out_planes
        ocnt_b = nv * out_cnt_pp if last else 0 * nv
        ops_b = pairs_b * ps.pac_cols
        encb = out_b * enc_planes
        n_out = int(out_b.sum())
        tr += [
            (reads, "global_buffer", in_kind, int(act_b.sum())),
            (reads, "global_buffer", "sparsity_counts", int(cnt_b.sum())),
            (reads, "global_buffer", "psums", int(psr_b.sum())),
            (writes, "global_buffer", "psums", int(psw_b.sum())),
            (writes, "bank_buffer", bank_kind, sum(int(x.sum()) for x in bb_t)),
            (reads, "bank_buffer", bank_kind, v * sum(t.rows for t in ps.tiles) * prec.x_planes),
            (writes, "bank_buffer", "outputs", n_out * xbit),
            (reads, "bank_buffer", "outputs", n_out * xbit),
            (writes, out_home, "outputs", int(outmem_b.sum())),
            (writes, out_home, "sparsity_counts", int(np.sum(ocnt_b))),
        ]
        pr: dict[str, Any] = {"traffic": tr, "pac_ops": int(ops_b.sum()),
                              "enc_bits": int(encb.sum()) + int((newpix_b * ps.channels).sum())
                              * fetch_count_planes}
        if in_home == "main":
            main_act = mainpix_b * (ps.channels * in_bits)
            main_cnt = mainpix_b * cnt_pp
            tr += [
                (reads, "main", in_kind, int(main_act.sum())),
                (reads, "main", "sparsity_counts", int(main_cnt.sum())),
                (writes, "global_buffer", in_kind, int(main_act.sum())),
                (writes, "global_buffer", "sparsity_counts", int(main_cnt.sum())),
            ]
            mf_bits = main_act + main_cnt
            pr.update(d_mf=_cdiv(mf_bits, bus_main).tolist(), d_lb=_cdiv(mf_bits, bus_gb).tolist(),
                      mf_bits=mf_bits.tolist())
        gf_bits = act_b + cnt_b + psr_b
        bb_max = np.max(bb_t, axis=0)
        wb_bits = outmem_b + ocnt_b + psw_b
        pr.update(
            d_gf=np.maximum(_cdiv(gf_bits, bus_gb), _cdiv(bb_max, bus_bb)).tolist(),
            gf_bits=gf_bits.tolist(),
            d_wb=_cdiv(wb_bits, bus_gb).tolist(),
            wb_bits=wb_bits.tolist(),
            d_wm=_cdiv(outmem_b + ocnt_b, bus_main).tolist(),
            wm_bits=(outmem_b + ocnt_b).tolist(),
            d_p=_cdiv(ops_b, pac.engine_ops_per_cycle).tolist(),
            ops=ops_b.tolist(),
            d_e=_cdiv(encb, pac.encoder_bits_per_cycle).tolist(),
            encb=encb.tolist(),
        )
        pr["use_p"], pr["use_e"] = any(pr["ops"]), any(pr["encb"])
        return pr

    cache: dict[tuple, dict[str, Any]] = {}
    d_c = comp_b.tolist()
    nv_l, st_l = nv.tolist(), starts.tolist()
    for ps in mp.passes:
        nt = len(ps.tiles)
        last = ps.index == len(mp.passes) - 1
        key = (ps.channels, ps.groups if len(grp_bits) > 1 else (), ps.resume_cols,
               ps.spill_cols, ps.done_cols, ps.pac_cols,
               tuple((t.rows, t.new_rows) for t in ps.tiles), last)
        pr = cache.get(key)
        if pr is None:
            pr = cache[key] = profile(ps, last)
        for acc, lv, kd, bits in pr["traffic"]:
            acc[lv][kd] += bits
        reads["main"]["weights"] += ps.weight_bits
        reads["main"]["w_counts"] += ps.wcount_bits
        writes["bank_buffer"]["w_counts"] += ps.wcount_bits
        reads["bank_buffer"]["w_counts"] += len(st_l) * ps.wcount_bits  # per column per batch
        pac_ops += pr["pac_ops"]
        enc_bits_total += pr["enc_bits"]
        d_gf, gf_bits, d_wb, wb_bits = pr["d_gf"], pr["gf_bits"], pr["d_wb"], pr["wb_bits"]
        d_wm, wm_bits, d_p, ops_l = pr["d_wm"], pr["wm_bits"], pr["d_p"], pr["ops"]
        d_e, encb_l, use_p, use_e = pr["d_e"], pr["encb"], pr["use_p"], pr["use_e"]
        if in_home == "main":
            d_mf, d_lb, mf_bits = pr["d_mf"], pr["d_lb"], pr["mf_bits"]
        tile_lbl = [f"r{t.row}c{t.col}" for t in ps.tiles]
        bank_group = tuple(banks[i] for i in range(nt))
        bank_lbl = "bank0" if nt == 1 else f"bank0-{nt - 1}"
        tiles_lbl = "+".join(tile_lbl)
        plbl = f"p{ps.index}"

        w_bits = ps.weight_bits + ps.wcount_bits  # main -> banks / count store, own path
        w = eng.add("weight_load", (r_main,), int(_cdiv(w_bits, bus_main)), last_batch,
                    ("main", plbl, ps.index, 0, 0, w_bits))

        for j in range(len(nv_l)):
            mf = None
            if in_home == "main":  # main -> line buffer: the main bus, then a global-buffer write
                mf = eng.add("act_fetch", (r_main,), d_mf[j], (mf_hist[-1], gf_hist[-2]),
                             ("main", plbl, ps.index, st_l[j], nv_l[j], mf_bits[j]))
                mf = eng.add("act_fetch", (r_gb,), d_lb[j], (mf,),
                             ("global_buffer", plbl, ps.index, st_l[j], nv_l[j], mf_bits[j]))
            gf = eng.add("act_fetch", (r_gb,), d_gf[j],
                         (mf, gf_hist[-1], c_hist[-2][0] if c_hist[-2] else None),
                         ("global_buffer", plbl, ps.index, st_l[j], nv_l[j], gf_bits[j]))
            prev_c = c_hist[-1][0] if c_hist[-1] else None  # banks keep batch order
            deps = (gf, wb_hist[-2], w, prev_c) if j == 0 else (gf, wb_hist[-2], prev_c)
            # the pass's tiles sit on banks 0..nt-1 with identical deps and durations, so they
            # run in lockstep: one event holding all of them is exact and nt times cheaper
            c_all = eng.add("compute", bank_group, d_c[j], deps,
                            (bank_lbl, tiles_lbl, ps.index, st_l[j], nv_l[j], 0))
            cs = [c_all]
            comp0.append(c_all)
            pt = None
            if use_p:
                pt = eng.add("pac", (r_pac,), d_p[j], (gf, p_prev),
                             ("pac_engine", plbl, ps.index, st_l[j], nv_l[j], ops_l[j]))
                p_prev = pt
            et = None
            if use_e:
                et = eng.add("encode", (r_enc,), d_e[j], (*cs, pt),
                             ("encoder", plbl, ps.index, st_l[j], nv_l[j], encb_l[j]))
            wdeps = (et,) if et is not None else (*cs, pt)
            wb = eng.add("write_back", (r_gb,), d_wb[j], wdeps,
                         ("global_buffer", plbl, ps.index, st_l[j], nv_l[j], wb_bits[j]))
            if out_home == "main":  # across the global-buffer bus, then the main bus
                wb = eng.add("write_back", (r_main,), d_wm[j], (wb,),
                             ("main", plbl, ps.index, st_l[j], nv_l[j], wm_bits[j]))
            out_path[id(wb)] = (pt, et, wb)
            mf_hist = [mf_hist[-1], mf]
            gf_hist = [gf_hist[-1], gf]
            c_hist = [c_hist[-1], cs]
            wb_hist = [wb_hist[-1], wb]
        last_batch = c_hist[-1]

    end = eng.run()

    # --- stalls on bank 0 (it takes part in every pass, so it is the busiest bank) ----------
    stalls = dict.fromkeys(STALL_CAUSES, 0)
    prev_end = 0
    for c in comp0:
        gap = c.start - prev_end
        if gap > 0:
            stalls[_blame(c, out_path)] += gap
        prev_end = c.end
    stalls["drain"] += end - prev_end
    compute = sum(c.duration for c in comp0)
    busy_all = sum(b.busy for b in banks)

    if trace is not None:
        for t in eng.tasks:
            res, tile, p_i, v0, nvec, bits = t.meta
            trace.append((t.start, t.end, res, t.kind, name, tile, nvec, p_i, v0, bits))

    tiles = mp.tiles
    cyc_sum = int(cyc.sum())
    bit_serial = m.kind == "bit_serial"
    return LayerCounts(
        name=name,
        cycles=int(end),
        compute_cycles=int(compute),
        stall_cycles=stalls,
        bank_utilization=busy_all / (m.banks * end) if end else 0.0,
        passes=len(mp.passes),
        weight_reloads=mp.weight_reloads,
        vector_tiles=v * tiles,
        bit_serial_cycles_baseline=v * tiles * xbit * wbit,
        bit_serial_cycles=tiles * (cyc_sum if bit_serial else v * step),
        column_cycles=k * mp.row_tiles * cyc_sum if bit_serial else 0,
        active_row_cycles=n * k * cyc_sum if bit_serial else 0,
        bpbs_conversions=0 if bit_serial else k * wbit * mp.row_tiles * v * step,
        pac_ops=pac_ops,
        encoder_bits=enc_bits_total,
        weight_bits_written=sum(p.weight_bits for p in mp.passes),
        psum_bits=v * k * (mp.row_tiles - 1) * mp.psum_width,
        reads_bits=reads,
        writes_bits=writes,
        events=len(eng.tasks),
        exact=exact,
        row_tiles=mp.row_tiles,
        col_tiles=mp.col_tiles,
        input_home=in_home,
        output_home=out_home,
        digital_cycles_mean=cyc_sum / v if v else 0.0,
        busy_cycles={"banks": busy_all, "main": r_main.busy, "global_buffer": r_gb.busy,
                     "pac_engine": r_pac.busy, "encoder": r_enc.busy},
    )


def _blame(c: Task, out_path: dict[int, tuple[Task | None, Task | None, Task]]) -> str:
    """Why bank 0 waited before compute event c: the dependency that ended last, and if that
    was a write-back (output buffer still full), the slowest stage of that output path."""
    crit = c.critical
    if crit is None or crit.kind == "weight_load":
        return "weight_load"
    if crit.kind == "write_back":
        pt, et, wb = out_path[id(crit)]
        stages = [(wb.duration + wb.waited, "memory")]
        if et is not None:
            stages.append((et.duration + et.waited, "encoder"))
        if pt is not None:
            stages.append((pt.duration + pt.waited, "pac_engine"))
        return max(stages)[1]
    return "memory"
