"""The scheduler against closed forms, conservation laws, and the PACiM-vs-D-CiM comparison."""

from __future__ import annotations

import csv

import pytest

from pacim.arch import load_arch
from pacim.macro.stats import MacroStats
from pacim.sched import (
    DEFAULT_NO_DATA,
    TRACE_COLUMNS,
    LayerCounts,
    map_layer,
    precision,
    schedule,
    schedule_layer,
    summarize,
)
from pacim.workloads.ir import Workload, conv_layer, linear_layer, matmul_layer

BIG = 1 << 20  # a bus so wide every transfer takes one cycle
FAST = {
    "memory.main.bus_bits": BIG,
    "memory.global_buffer.bus_bits": BIG,
    "memory.bank_buffer.bus_bits": BIG,
    "pac.engine_ops_per_cycle": 1e9,
    "pac.encoder_bits_per_cycle": 1e9,
}
STATIC = {"pac.dynamic": None}


def _arch(name: str, **ov):
    return load_arch(name, {k.replace("__", "."): v for k, v in ov.items()})


def _fast(name: str, extra: dict | None = None):
    return load_arch(name, {**FAST, **(extra or {})})


def _consistent(c: LayerCounts) -> None:
    """Every non-compute cycle of bank 0 has a cause."""
    assert c.compute_cycles + sum(c.stall_cycles.values()) == c.cycles
    assert 0.0 <= c.bank_utilization <= 1.0


def resnet18_shapes(first_exact: bool = True) -> Workload:
    """ResNet-18 (ImageNet, batch 1) layer shapes, built from the IR alone."""
    layers = [conv_layer("conv1", (1, 3, 224, 224), 64, 7, 2, 3, exact=first_exact)]
    h, cin = 56, 64
    for si, (ch, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        for bi in range(2):
            s = stride if bi == 0 else 1
            c1 = conv_layer(f"layer{si}.{bi}.conv1", (1, cin, h, h), ch, 3, s, 1)
            ho = c1.out_hw[0]
            layers += [c1, conv_layer(f"layer{si}.{bi}.conv2", (1, ch, ho, ho), ch, 3, 1, 1)]
            if s != 1 or cin != ch:
                layers.append(conv_layer(f"layer{si}.{bi}.downsample", (1, cin, h, h), ch, 1, s))
            cin, h = ch, ho
    layers.append(linear_layer("fc", 1, 512, 1000))
    return Workload("resnet18", tuple(layers))


# --- closed forms ----------------------------------------------------------------------------


def test_one_pass_dcim_cycles_closed_form():
    """cycles = vectors x 64 + fill + drain, with fill/drain counted by hand."""
    arch = _fast("dcim_65nm")
    la = linear_layer("fc", 100, 256, 64)
    c = schedule_layer(arch, la, batch=10)
    # fill: weights (main bus) then the first batch: main bus -> line buffer -> bank buffers,
    # 1 cycle each on the serialising buses; drain: the last write-back, 1 cycle.
    fill, drain = 4, 1
    assert c.passes == 1 and c.weight_reloads == 0
    assert c.compute_cycles == 100 * 64
    assert c.cycles == 100 * 64 + fill + drain
    assert c.stall_cycles["memory"] == fill and c.stall_cycles["drain"] == drain
    assert c.bit_serial_cycles == c.bit_serial_cycles_baseline == 100 * 64
    _consistent(c)


def test_one_pass_pac_cycles_closed_form():
    """Static operand 4: 16 cycles per vector; drain = encode + write-back of the last batch."""
    arch = _fast("pacim_65nm", STATIC)
    la = linear_layer("fc", 100, 256, 64)
    c = schedule_layer(arch, la, batch=10)
    assert c.compute_cycles == 100 * 16
    assert c.cycles == 100 * 16 + 4 + 2
    assert c.stall_cycles["drain"] == 2
    assert c.bit_serial_cycles == 100 * 16 and c.bit_serial_cycles_baseline == 100 * 64
    assert c.pac_ops == 100 * 64 * 2  # 2 count products per output at static operand 4
    _consistent(c)


def test_exact_layer_uses_all_pairs():
    arch = _fast("pacim_65nm")
    la = linear_layer("fc", 20, 256, 64, exact=True)
    c = schedule_layer(arch, la, batch=5)
    assert c.exact and c.compute_cycles == 20 * 64 and c.pac_ops == 0
    assert c.weight_bits_written == 256 * 64 * 8


def _conv():
    return conv_layer("c", (1, 16, 8, 8), 32, 3, 1, 1)  # N = 144, K = 32, 64 vectors


def test_traffic_exact_formula_dcim():
    arch = _fast("dcim_65nm")
    la = _conv()
    c = schedule_layer(arch, la, prev_layer=la, batch=7)
    h = w = 8
    cin, k, v, n = 16, 32, 64, 144
    assert c.input_home == "global_buffer" and c.output_home == "global_buffer"
    r, wr = c.reads_bits, c.writes_bits
    assert r["main"]["weights"] == n * k * 8
    # sliding window: each output row reads its valid input rows once: (3H - 2) * W pixels
    assert r["global_buffer"]["act_full"] == (3 * h - 2) * w * cin * 8
    # bank input buffer: full window at each row start, then the one new column (dx = 2)
    assert wr["bank_buffer"]["act_full"] == (8 * n + (v - 8) * n // 3) * 8
    assert r["bank_buffer"]["act_full"] == v * n * 8
    assert wr["global_buffer"]["outputs"] == v * k * 8
    assert r["global_buffer"]["psums"] == wr["global_buffer"]["psums"] == 0
    assert c.total_reads_bits == n * k * 8 + (3 * h - 2) * w * cin * 8 + v * n * 8 + v * k * 8
    assert c.weight_bits_written == n * k * 8 and c.encoder_bits == 0


def test_traffic_exact_formula_pac_with_encoder():
    arch = _fast("pacim_65nm", STATIC)
    la = _conv()
    c = schedule_layer(arch, la, prev_layer=la, batch=7)
    h = w = 8
    cin, k, v, n = 16, 32, 64, 144
    pix = (3 * h - 2) * w
    r, wr = c.reads_bits, c.writes_bits
    assert r["main"]["weights"] == n * k * 4  # LSB weight planes are never stored
    assert r["main"]["w_counts"] == k * 8 * n.bit_length()  # S_w of all 8 planes
    assert r["global_buffer"]["act_msb"] == pix * cin * 4
    assert r["global_buffer"]["act_full"] == 0  # LSB activations never move as bits
    assert r["global_buffer"]["sparsity_counts"] == pix * 4 * cin.bit_length()
    assert wr["global_buffer"]["outputs"] == v * k * 4
    assert wr["global_buffer"]["sparsity_counts"] == v * 4 * k.bit_length()
    assert c.encoder_bits == v * k * 4 + pix * cin * 4  # LSBs at write-back, MSBs at fetch
    assert c.pac_ops == v * k * 2


def test_more_tiles_than_banks_passes_and_reloads():
    la = linear_layer("fc", 40, 512, 256)  # 2 row tiles x 4 column tiles
    c = schedule_layer(_fast("dcim_65nm", {"macro.banks": 4}), la, batch=8)
    assert (c.row_tiles, c.col_tiles, c.passes, c.weight_reloads) == (2, 4, 2, 1)
    assert c.reads_bits["global_buffer"]["psums"] == 0  # row tiles of a column share a pass
    assert c.weight_bits_written == 512 * 256 * 8
    assert c.vector_tiles == 40 * 8
    assert c.compute_cycles == 2 * 40 * 64  # bank 0 computes in both passes
    # 3 banks: tiles c0r0 c0r1 c1r0 | c1r1 c2r0 c2r1 | c3r0 c3r1 -> column 1 spills once
    c3 = schedule_layer(_fast("dcim_65nm", {"macro.banks": 3}), la, batch=8)
    assert (c3.passes, c3.weight_reloads) == (3, 2)
    pw = (512 * 255 * 255).bit_length()
    assert c3.writes_bits["global_buffer"]["psums"] == 40 * 64 * pw
    assert c3.reads_bits["global_buffer"]["psums"] == 40 * 64 * pw
    assert c3.psum_bits == 40 * 256 * 1 * pw
    assert c3.reads_bits["main"]["weights"] == 512 * 256 * 8
    _consistent(c3)


def test_starved_bus_stalls_and_slows():
    la = conv_layer("c", (1, 64, 16, 16), 64, 3, 1, 1)
    cycles = []
    for bits in (256, 32, 8, 2):
        c = schedule_layer(load_arch("dcim_65nm", {"memory.global_buffer.bus_bits": bits}), la,
                           prev_layer=la)
        _consistent(c)
        cycles.append((c.cycles, c.stall_cycles["memory"]))
    assert cycles[0][1] < 0.05 * cycles[0][0]  # a wide bus hides the fetches
    assert cycles[-1][1] > cycles[-1][0] / 2  # a starved bus dominates
    assert all(a[0] < b[0] for a, b in zip(cycles, cycles[1:], strict=False))


def test_slow_pac_engine_stalls():
    la = linear_layer("fc", 320, 256, 64)
    slow = schedule_layer(_fast("pacim_65nm", {**STATIC, "pac.engine_ops_per_cycle": 4}), la)
    fast = schedule_layer(_fast("pacim_65nm", STATIC), la)
    assert fast.stall_cycles["pac_engine"] == 0
    # 64 outputs x 2 products / 4 per cycle = 32 cycles per vector vs 16 in the banks
    assert slow.stall_cycles["pac_engine"] > 0 and slow.cycles >= 320 * 32
    _consistent(slow)


# --- conservation ----------------------------------------------------------------------------


def _needed_pixels(la) -> int:
    """Input elements some window of the layer touches (padding excluded), counted directly."""
    if la.kind != "conv2d":
        return la.vectors * la.n
    b, cin, h, w = la.in_shape
    ho, wo = la.out_hw
    kh, kw = la.kernel
    s, p = la.stride, la.padding
    rows = {oy * s + d - p for oy in range(ho) for d in range(kh)} & set(range(h))
    cols = {ox * s + d - p for ox in range(wo) for d in range(kw)} & set(range(w))
    return b * cin * len(rows) * len(cols)



@pytest.mark.parametrize("name", ["pacim_65nm", "dcim_65nm"])
def test_conservation_resnet18(name):
    arch = load_arch(name)
    wl = resnet18_shapes()
    counts = schedule(arch, wl)
    for la, c in zip(wl.layers, counts, strict=True):
        _consistent(c)
        prec = precision(arch, c.exact)
        mp = map_layer(arch, la, prec)
        planes = mp.w_planes
        assert c.reads_bits["main"]["weights"] >= la.n * la.k * planes
        assert c.weight_bits_written == la.n * la.k * planes
        home = c.input_home
        src = "main" if home == "main" else "global_buffer"
        act = c.reads_bits[src]["act_msb"] + c.reads_bits[src]["act_full"]
        bits = prec.x_planes if c.reads_bits[src]["act_msb"] else arch.macro.xbit
        assert act >= _needed_pixels(la) * bits, la.name
        # every output is written exactly once (to its home), staged once in the bank buffer
        out_bits = c.writes_bits[c.output_home]["outputs"]
        per = arch.pac.operand if arch.pac.sparsity_encoder else arch.macro.xbit
        assert out_bits == la.vectors * la.k * per, la.name
        assert c.writes_bits["bank_buffer"]["outputs"] == la.vectors * la.k * arch.macro.xbit


# --- PACiM vs D-CiM on ResNet-18 ---------------------------------------------------------------


def _reduction(a: dict, b: dict) -> float:
    return 1.0 - a / b


def test_resnet18_pacim_vs_dcim(capsys):
    wl, wl_noexact = resnet18_shapes(), resnet18_shapes(first_exact=False)
    dcim = summarize(schedule(load_arch("dcim_65nm"), wl))
    static = summarize(schedule(load_arch("pacim_65nm", {**STATIC,
                                                         "pac.first_layer_exact": False}),
                                wl_noexact))
    static_first = summarize(schedule(load_arch("pacim_65nm", STATIC), wl))
    dyn = summarize(schedule(load_arch("pacim_65nm"), wl))
    assert dcim["bit_serial_cycles"]["reduction"] == 0.0
    assert static["bit_serial_cycles"]["reduction"] == pytest.approx(0.75, abs=1e-12)
    assert static["bit_serial_cycles"]["baseline"] == dcim["bit_serial_cycles"]["baseline"]
    assert static_first["bit_serial_cycles"]["reduction"] < 0.75  # conv1 stays 8b x 8b
    assert dyn["bit_serial_cycles"]["actual"] < static_first["bit_serial_cycles"]["actual"]
    conv1 = 12544 * 64  # 112 x 112 vectors, one tile, 64 cycles each
    dyn_pac = 1 - (dyn["bit_serial_cycles"]["actual"] - conv1) / (
        dyn["bit_serial_cycles"]["baseline"] - conv1)
    assert dyn_pac > 0.75  # more than static on the PAC layers
    mem = lambda s: s["memory"]["reads_bits"] + s["memory"]["writes_bits"]  # noqa: E731
    mem_red = _reduction(mem(dyn), mem(dcim))
    main = lambda s: sum(s["memory"]["by_level"]["main"][k]  # noqa: E731
                         for k in ("reads_bits", "writes_bits"))
    main_red = _reduction(main(dyn), main(dcim))
    assert mem_red > 0.3 and main_red > 0.4
    assert dyn["cycles"] < dcim["cycles"]
    with capsys.disabled():
        print(f"\nresnet18 pacim vs dcim: bit-serial reduction static "
              f"{static['bit_serial_cycles']['reduction']:.1%} (first conv exact: "
              f"{static_first['bit_serial_cycles']['reduction']:.1%}), dynamic no-data "
              f"{dyn['bit_serial_cycles']['reduction']:.1%} (PAC layers {dyn_pac:.1%}); "
              f"memory accesses -{mem_red:.1%} (main memory -{main_red:.1%}); "
              f"cycles {dyn['cycles']} vs {dcim['cycles']}")


# --- stats, scope, bp_bs, API ------------------------------------------------------------------


def _stats(hist: dict[int, int], positions: int, k: int, n: int) -> MacroStats:
    outputs = positions * k
    return MacroStats(
        macs=outputs * n, n=n, outputs=outputs, positions=positions, xbit=8, wbit=8, operand=4,
        approx="pac", digital_cycles_mean=sum(c * m for c, m in hist.items()) / outputs,
        cycle_hist=hist, pac_pairs=sum((64 - c) * m for c, m in hist.items()),
        x_density=(0.3,) * 8, w_density=(0.5,) * 8,
    )


def test_stats_drive_dynamic_cycles():
    la = conv_layer("c", (1, 16, 8, 8), 32, 3, 1, 1)
    hist = {16: 20 * 32, 15: 14 * 32, 13: 20 * 32, 10: 10 * 32}  # per output (positions x K)
    st = _stats(hist, 64, 32, 144)
    c = schedule_layer(_fast("pacim_65nm"), la, st, prev_layer=la, batch=8)
    total = 20 * 16 + 14 * 15 + 20 * 13 + 10 * 10
    assert c.bit_serial_cycles == total  # one tile
    assert c.compute_cycles == total
    # count products per output at the 16/15/13/10-cycle levels: 2/3/4/5 (pac_products)
    assert c.pac_ops == (20 * 2 + 14 * 3 + 20 * 4 + 10 * 5) * 32
    assert c.digital_cycles_mean == pytest.approx(total / 64)


def test_no_data_default_mix():
    la = conv_layer("c", (1, 64, 32, 32), 64, 3, 1, 1)
    c = schedule_layer(load_arch("pacim_65nm"), la, prev_layer=la)
    mix = DEFAULT_NO_DATA["dynamic_mix"]
    mean = sum(k * f for k, f in mix.items()) / sum(mix.values())
    assert c.digital_cycles_mean == pytest.approx(mean, abs=0.01)
    assert 10 <= c.digital_cycles_mean < 16


def test_bank_scope_more_counts():
    la = conv_layer("c", (1, 64, 14, 14), 64, 3, 1, 1)  # N = 576: 3 row segments
    vec = schedule_layer(_fast("pacim_65nm", STATIC), la, prev_layer=la)
    bank = schedule_layer(_fast("pacim_65nm", {**STATIC, "pac.scope": "bank"}), la,
                          prev_layer=la)
    assert bank.row_tiles == 3 and vec.row_tiles == 3
    assert bank.pac_ops == 3 * vec.pac_ops
    assert bank.reads_bits["main"]["w_counts"] > vec.reads_bits["main"]["w_counts"]
    assert bank.reads_bits["global_buffer"]["sparsity_counts"] > \
        vec.reads_bits["global_buffer"]["sparsity_counts"]


def test_bp_bs_steps():
    arch = load_arch("jia_bpbs_65nm", {"macro.wbit": 4, "macro.xbit": 4, **{
        k: v for k, v in FAST.items() if k.startswith("memory")}})
    la = linear_layer("fc", 10, 768, 192)  # 192 weights x 4 columns = 768 columns: 1 tile
    c = schedule_layer(arch, la, batch=5)
    assert c.passes == 1 and c.col_tiles == 1
    assert c.bit_serial_cycles == 10 * 4 and c.bit_serial_cycles_baseline == 10 * 16
    assert c.compute_cycles == 10 * 4 * 25
    assert c.bpbs_conversions == 10 * 4 * 768
    assert c.weight_bits_written == 768 * 192 * 4


def test_schedule_skips_matmul_and_trace(tmp_path):
    wl = Workload("w", (linear_layer("a", 40, 256, 128), matmul_layer("qk", 40, 64, 40),
                        linear_layer("b", 40, 128, 256)))
    path = tmp_path / "trace.csv"
    counts = schedule(load_arch("pacim_65nm"), wl, trace_path=path)
    assert [c.name for c in counts] == ["a", "b"]
    assert not counts[0].exact and not counts[1].exact  # first_layer_exact is for a conv
    first_conv = schedule(load_arch("pacim_65nm"), Workload("c", (_conv(), _conv())))
    assert first_conv[0].exact and not first_conv[1].exact
    assert first_conv[0].input_home == "main" and first_conv[1].input_home == "global_buffer"
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0].keys()) == TRACE_COLUMNS
    assert len(rows) == sum(c.events for c in counts)
    kinds = {r["kind"] for r in rows}
    assert {"weight_load", "act_fetch", "compute", "pac", "encode", "write_back"} <= kinds
    by_res: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        s, e = int(r["start"]), int(r["end"])
        assert e >= s
        by_res.setdefault(r["resource"], []).append((s, e))
    for spans in by_res.values():  # a resource serves one event at a time
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    # layer b starts after layer a ends on the shared time axis
    end_a = max(int(r["end"]) for r in rows if r["layer"] == "a")
    assert min(int(r["start"]) for r in rows if r["layer"] == "b") >= end_a
    s = summarize(counts)
    assert s["cycles"] == sum(c.cycles for c in counts)
    assert s["memory"]["reads_bits"] == sum(c.total_reads_bits for c in counts)
    assert s["events"] == len(rows)


def test_schedule_events_scale_linearly():
    """Event counts grow linearly with the layers (no absolute-time assertion)."""
    la = conv_layer("c", (1, 64, 28, 28), 128, 3, 1, 1)
    arch = load_arch("pacim_65nm")
    ev = [sum(c.events for c in schedule(arch, Workload("w", (la,) * n))) for n in (1, 2, 3)]
    assert ev[2] - ev[1] == ev[1] - ev[0] > 0


def test_shapes_only_schedule_cache_is_exact_and_keyed():
    wl = Workload("w", (_conv(), _conv()))
    a = load_arch("pacim_65nm")
    fresh = schedule(a, wl, cache=False)
    first = schedule(a, wl)
    again = schedule(a.with_overrides({"technology.vdd": 0.9}), wl)  # same schedule, reused
    assert [c.to_dict() for c in fresh] == [c.to_dict() for c in first]
    assert again[0] is first[0]
    other = schedule(a.with_overrides({"macro.banks": 2}), wl)  # the macro changed: recomputed
    assert other[0] is not first[0]


def test_pac_products_per_output_and_peak_counts():
    """Count products per output are the scheduler's count (2/3/4/5 at 16/15/13/10 cycles),
    and the peak's counts are one bank's vector-tile at full utilization."""
    import numpy as np

    from pacim.sched import pac_products, pac_products_at, peak_counts

    a = load_arch("pacim_65nm")
    assert pac_products(a, np.array([16, 15, 13, 10, 64])).tolist() == [2, 3, 4, 5, 0]
    assert pac_products_at(a, 14.0) == pytest.approx(3.5)  # linear between 13 and 15
    m = a.macro
    p = peak_counts(a, 13.0)
    assert (p.digital_cycles, p.column_cycles, p.pac_ops) == (13.0, m.cols * 13.0, m.cols * 4.0)
    assert p.encoder_bits == m.rows * m.xbit and p.ops == 2.0 * m.rows * m.cols
    assert p.cycles == 13.0 * m.cycles_per_step and p.bpbs_conversions == 0
    d = peak_counts(load_arch("dcim_65nm"), 13.0)  # exact: every pair runs in the banks
    assert d.digital_cycles == 64.0 and d.pac_ops == 0.0 and d.encoder_bits == 0
    j = peak_counts(load_arch("jia_bpbs_65nm"))
    jm = load_arch("jia_bpbs_65nm").macro
    assert j.bpbs_conversions == (jm.cols // jm.wbit) * jm.wbit and j.column_cycles == 0.0
    with pytest.raises(ValueError, match="mean_digital_cycles"):
        peak_counts(a, 0.0)
