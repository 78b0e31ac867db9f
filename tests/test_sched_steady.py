"""Steady-state extrapolation equals the full simulation, field by field; the compressed pass
sequence equals the passes one by one; the scheduler's memory does not grow with the events."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pacim.arch import load_arch
from pacim.errors import PacimError
from pacim.macro.stats import MacroStats
from pacim.sched import (
    Steady,
    map_layer,
    precision,
    program,
    schedule,
    schedule_layer,
    window_reuse,
)
from pacim.sched.timing import CycleMix, spread
from pacim.workloads import load_workload
from pacim.workloads.ir import Workload, conv_layer, linear_layer

EAGER = Steady(min_skip=4)  # extrapolate even short stretches, so small layers exercise it
STATIC = {"pac.dynamic": None}


def _fields(c) -> dict:
    d = c.to_dict()
    d.pop("simulated_events")  # the one field that says how much was extrapolated
    return d


ARCHS = {
    "pacim": ("pacim_65nm", {}),  # PAC, dynamic mix (no-data default), encoder
    "static": ("pacim_65nm", STATIC),
    "dcim": ("dcim_65nm", {}),  # no PAC, no encoder
    "bpbs": ("jia_bpbs_65nm", {}),
    "bank": ("pacim_65nm", {"pac.scope": "bank"}),
    "main_bound": ("pacim_65nm", {"memory.main.bus_bits": 4}),  # memory-bound
    "gb_bound": ("dcim_65nm", {"memory.global_buffer.bus_bits": 8}),
    "pac_bound": ("pacim_65nm", {**STATIC, "pac.engine_ops_per_cycle": 2}),
    "enc_bound": ("pacim_65nm", {**STATIC, "pac.encoder_bits_per_cycle": 1}),
    "banks3": ("pacim_65nm", {"macro.banks": 3}),  # passes > banks, spills across passes
}
LAYERS = {
    "tokens": linear_layer("l", 3000, 512, 128),  # a long uniform pass
    "ffn": linear_layer("d", 700, 11008, 300),  # row tiles straddle passes (psum spills)
    "wide": linear_layer("w", 1, 300, 100000),  # many identical passes
    "deep_conv": conv_layer("c", (1, 20000, 8, 8), 64, 3, 1, 1),  # interior passes, period 9
    "conv1x1": conv_layer("p", (1, 30000, 4, 4), 64, 1, 1, 0),
    "conv_s2": conv_layer("s", (1, 5000, 16, 16), 130, 3, 2, 1),
}


@pytest.mark.parametrize("arch_name", list(ARCHS))
def test_extrapolated_equals_full(arch_name):
    name, ov = ARCHS[arch_name]
    arch = load_arch(name, ov)
    triggered = 0
    for la in LAYERS.values():
        for prev in (None, la):  # network input from main / encoded input from the chip
            full = schedule_layer(arch, la, prev_layer=prev, steady=False)
            ex = schedule_layer(arch, la, prev_layer=prev, steady=EAGER)
            assert _fields(ex) == _fields(full), (la.name, prev is not None)
            assert full.simulated_events == full.events
            assert ex.simulated_events <= ex.events
            triggered += ex.simulated_events < ex.events
    assert triggered >= 4  # it applies on most of these layers


def test_extrapolated_equals_full_with_stats():
    """A measured dynamic-level histogram (data) on a long linear layer and a deep conv."""
    arch = load_arch("pacim_65nm")
    for la in (linear_layer("l", 4000, 512, 64), conv_layer("c", (1, 20000, 8, 8), 64, 3, 1, 1)):
        st = MacroStats(macs=la.macs, n=la.n, outputs=la.vectors * la.k, positions=la.vectors,
                        xbit=8, wbit=8, operand=4, approx="pac", digital_cycles_mean=13.0,
                        cycle_hist={16: 10 * la.k, 13: (la.vectors - 10) * la.k},
                        pac_pairs=0, x_density=(0.5,) * 8, w_density=(0.5,) * 8)
        full = schedule_layer(arch, la, st, prev_layer=la, steady=False)
        ex = schedule_layer(arch, la, st, prev_layer=la, steady=EAGER)
        assert _fields(ex) == _fields(full)


@pytest.mark.parametrize("wl", [
    ("llm-layer", {"tokens": 6000, "hidden": 1024, "ffn": 2816, "heads": 8}),
    ("resnet18-cifar", {"batch": 4}),
])
def test_whole_workload_default_settings(wl):
    """The shipped defaults (min_skip 64): whole workloads, every layer equal."""
    w = load_workload(wl[0], data=False, **wl[1])
    for name in ("pacim_65nm", "jia_bpbs_65nm"):
        arch = load_arch(name)
        full = schedule(arch, w, cache=False, steady=False)
        ex = schedule(arch, w, cache=False)
        assert [_fields(c) for c in ex] == [_fields(c) for c in full]
        if wl[0] == "llm-layer" and name == "pacim_65nm":  # 188 batches per pass
            assert sum(c.simulated_events for c in ex) < sum(c.events for c in ex) / 5


def test_huge_layers_finish_fast_and_exact_in_closed_form():
    """10^8 tokens and a 10^9-channel conv: totals follow the shapes exactly."""
    arch = load_arch("pacim_65nm", STATIC)
    t = 10**8
    la = linear_layer("q", t, 4096, 4096)
    c = schedule_layer(arch, la, prev_layer=la)
    assert c.simulated_events < 10**5 < c.events
    assert c.vector_tiles == t * 16 * 64 and c.bit_serial_cycles == t * 16 * 64 * 16
    assert c.writes_bits["bank_buffer"]["outputs"] == t * 4096 * 8
    conv = conv_layer("c", (1, 10**9, 32, 32), 64, 3, 1, 1)
    c = schedule_layer(arch, conv, prev_layer=conv)
    assert c.passes == -(-9 * 10**9 // 256 // 16) and c.simulated_events < 10**5
    assert c.weight_bits_written == 9 * 10**9 * 64 * 4
    assert c.compute_cycles + sum(c.stall_cycles.values()) == c.cycles


@pytest.mark.parametrize("arch", [
    load_arch("pacim_65nm"), load_arch("pacim_65nm", {"pac.scope": "bank"}),
    load_arch("jia_bpbs_65nm"), load_arch("pacim_65nm", {"macro.banks": 3, "macro.rows": 64}),
])
def test_pass_runs_equal_the_passes(arch):
    """The runs of pass kinds expand to exactly the kind of every pass, pass by pass."""
    shapes = [linear_layer("l", 3, n, k) for n in (1, 257, 4097, 11008, 40000)
              for k in (1, 65, 1000, 30000)]
    shapes += [conv_layer("c", (1, c, 9, 9), k, kk, s, kk // 2) for c in (3, 300, 1500)
               for k in (8, 130, 2000) for kk in (1, 3, 7) for s in (1, 2)]
    for la in shapes:
        mp = map_layer(arch, la, precision(arch, False))
        runs = [kd for r in mp.runs for _ in range(r.repeat) for kd in r.kinds]
        assert runs == [mp.kind_of(p) for p in range(mp.pass_count)], la
        assert mp.pass_count == -(-mp.tiles // mp.banks)


def test_uncompressible_mapping_is_refused():
    """Huge in both N and K (no repeating pattern of passes short enough): one PacimError."""
    la = linear_layer("x", 1, 10**7 + 1, 10**8)
    with pytest.raises(PacimError, match="split the layer"):
        map_layer(load_arch("pacim_65nm"), la, precision(load_arch("pacim_65nm"), False))


def test_cycle_mix_ranges_equal_the_whole_permutation():
    counts = {16: 123, 15: 77, 13: 400, 10: 311}
    whole = spread(counts)
    mix = CycleMix(tuple(sorted(counts.items())))
    parts = np.concatenate([mix.values(a, min(a + 97, mix.vectors))
                            for a in range(0, mix.vectors, 97)])
    assert np.array_equal(parts, whole)
    assert sorted(whole.tolist()) == sorted(c for c, n in counts.items() for _ in range(n))
    big = CycleMix(((10, 3 * 10**12), (16, 10**12)))  # no per-vector array, no overflow
    v = big.values(4 * 10**12 - 5, 4 * 10**12)
    assert set(v.tolist()) <= {10, 16} and v.size == 5


def test_window_reuse_ranges_equal_the_whole():
    la = conv_layer("c", (2, 8, 11, 13), 4, 3, 2, 1)
    whole = window_reuse(la)
    for a, b in ((0, 5), (7, 40), (40, la.vectors)):
        part = window_reuse(la, a, b)
        assert np.array_equal(part.new_pixels, whole.new_pixels[a:b])
        assert np.array_equal(part.row_start, whole.row_start[a:b])
        assert np.array_equal(part.main_pixels, whole.main_pixels[a:b])


def test_scheduler_memory_does_not_grow_with_events(monkeypatch):
    """Every event simulated (no extrapolation): 4x the events, about the same peak memory
    (per-batch durations are held for CHUNK batches at a time: made small here)."""
    monkeypatch.setattr(program, "CHUNK", 64)
    arch = load_arch("pacim_65nm")
    peaks = []
    for t in (32000, 128000):
        la = linear_layer("q", t, 1024, 256)
        schedule_layer(arch, la, steady=False)  # warm caches
        tracemalloc.start()
        c = schedule_layer(arch, la, steady=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert c.simulated_events == c.events > t / 8
    assert peaks[1] < 1.25 * peaks[0] and peaks[1] < 1 << 20, peaks


def test_hopeless_event_counts_are_refused_up_front():
    arch = load_arch("pacim_65nm")
    big = conv_layer("big", (1, 3, 100000, 100000), 64, 3, 1, 1)  # 10^10 irregular batches
    with pytest.raises(PacimError, match="over the scheduler's limit"):
        schedule(arch, Workload("w", (conv_layer("c0", (1, 3, 8, 8), 3, 3, 1, 1), big)))
