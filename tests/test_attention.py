"""Attention on the chip (issue 19, phase 1: the cost model): the arch's attention section,
the closed-form counts of QK^T / PV on the macro and on the digital unit, the KV cache, the
digital periphery, and the prefill / decode phases against step-by-step simulation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pacim.arch import load_arch
from pacim.errors import ConfigError, PacimError
from pacim.phase import decode_steps, simulate_phase, step_workload
from pacim.pipeline import simulate
from pacim.sched import attention_counts, combine, periphery_counts, schedule
from pacim.workloads.ir import matmul_layer
from pacim.workloads.llm_shape import LlmShape, periphery_ops, step_layers

ROOT = Path(__file__).resolve().parent.parent
CHIPS = ("pacim_65nm", "dcim_65nm", "jia_bpbs_65nm")
# a tiny decoder: 2 blocks, 4 query heads sharing 2 KV heads (GQA), head dim 8
TINY = LlmShape(blocks=2, hidden=32, ffn=48, heads=4, kv_heads=2, head_dim=8, head_out=40)
# a tiny macro so that the attention operands take several tiles and passes
SMALL = {"macro.banks": 3, "macro.rows": 8, "macro.cols": 4}


def tiny_arch(mapping: str | None = "cim", chip: str = "pacim_65nm", **kw: object):
    return load_arch(chip, {**SMALL, "attention.mapping": mapping, **kw})


# --- the arch section ---------------------------------------------------------------------
@pytest.mark.parametrize("chip", CHIPS)
def test_shipped_chips_carry_the_section_unmapped(chip: str) -> None:
    a = load_arch(chip)
    assert a.attention.mapping is None  # today's behaviour: benchmarks/expected.json holds
    for m in ("cim", "digital"):
        b = load_arch(chip, {"attention.mapping": m})
        for name in ("cell_write_bit", "digital_mac", "softmax_op", "rmsnorm_op", "rope_op",
                     "swiglu_op"):
            e = getattr(b.energy, name)
            assert e.value > 0 and e.source


@pytest.mark.parametrize("setting,needle", [
    ({"attention.mapping": "analog"}, "attention.mapping"),
    ({"attention.kv_home": "bank_buffer"}, "attention.kv_home"),
    ({"attention.write_bits_per_cycle": 0}, "attention.write_bits_per_cycle"),
    ({"attention.digital_macs_per_cycle": ".inf"}, "attention.digital_macs_per_cycle"),
    ({"attention.banks": 2}, "attention.banks: unknown key"),
    ({"attention.mapping": "cim", "energy.cell_write_bit": None}, "energy.cell_write_bit"),
    ({"attention.mapping": "digital", "energy.digital_mac": None}, "energy.digital_mac"),
])
def test_bad_attention_settings_are_named(setting: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_arch("pacim_65nm", setting)


def test_unmapped_reports_are_unchanged() -> None:
    """attention.mapping null: the figures of benchmarks/expected.json, no attention block."""
    exp = json.loads((ROOT / "benchmarks" / "expected.json").read_text())
    want = exp["llm-layer[tokens=32]@pacim_65nm"]
    r = simulate("pacim_65nm", "llm-layer", data=False, tokens=32).summary
    assert "attention" not in r and r["unmapped_macs"] > 0
    assert r["cycles"] == want["cycles"]
    assert r["memory"]["reads_bits"] == want["memory.reads_bits"]


# --- closed forms of one step -------------------------------------------------------------
@pytest.mark.parametrize("kv", [1, 5, 9, 17])
def test_kv_bits_cell_writes_and_reads_per_decode_step(kv: int) -> None:
    """One decode step of QK^T (1 x dh @ dh x kv per head) and PV (1 x kv @ kv x dh), GQA."""
    arch = tiny_arch()
    m = arch.macro
    h, kvh, dh, wbit, xbit = TINY.heads, TINY.kv_heads, TINY.head_dim, m.wbit, m.xbit
    cached = (kv - 1) * dh
    qk = matmul_layer("qk", 1, dh, kv, count=h, group=h // kvh, cached=cached)
    pv = matmul_layer("pv", 1, kv, dh, count=h, group=h // kvh, cached=cached)
    for la, n, k in ((qk, dh, kv), (pv, kv, dh)):
        c = attention_counts(arch, la)
        assert c.kv_cell_write_bits == kvh * dh * kv * wbit  # the whole K^T / V, every step
        assert c.reads_bits["main"]["kv_cache"] == kvh * (kv - 1) * dh * wbit  # cached part
        assert c.writes_bits["main"]["kv_cache"] == kvh * dh * wbit  # the new token's K / V
        rt, ct = math.ceil(n / m.rows), math.ceil(k / m.cols)
        tiles = kvh * rt * ct
        passes = math.ceil(tiles / m.banks)
        v = h // kvh  # the group's query rows stream against one K^T / V
        steps = xbit * wbit  # exact bit-serial
        assert c.passes == passes and c.vector_tiles == tiles * v
        assert c.compute_cycles == passes * v * steps
        tile_bits = min(n, m.rows) * min(k, m.cols) * wbit
        kv_load = max(passes * math.ceil(tile_bits / m.cols),
                      math.ceil(kvh * cached * wbit / arch.memory.main.bus_bits))
        assert c.stall_cycles["kv_load"] == kv_load
        assert c.active_row_cycles == kvh * n * k * v * steps
        assert c.column_cycles == kvh * k * rt * v * steps
        assert c.cycles == kv_load + c.compute_cycles + c.stall_cycles["memory"]
        assert c.kv_occupancy_bits == min(kvh * n * k * wbit, m.banks * tile_bits)


def test_bp_bs_and_digital_closed_forms() -> None:
    la = matmul_layer("pv", 2, 40, 8, count=4, group=2, cached=8 * 30)
    jia = tiny_arch(chip="jia_bpbs_65nm", **{"macro.cols": 16, "macro.wbit": 8, "macro.xbit": 8})
    c = attention_counts(jia, la)
    rt, ct = math.ceil(40 / 8), math.ceil(8 / (16 // 8))
    assert c.bpbs_conversions == 2 * 8 * 8 * rt * 4 * 8  # inst k wbit rt v xbit
    assert c.passes == math.ceil(2 * rt * ct / 3) and c.column_cycles == 0
    d = attention_counts(tiny_arch("digital", **{"attention.digital_macs_per_cycle": 7}), la)
    assert d.digital_macs == la.macs == 2 * 4 * 40 * 8
    assert d.kv_cell_write_bits == 0 and d.compute_cycles == 0
    assert d.busy_cycles["digital_unit"] == math.ceil(la.macs / 7) <= d.cycles
    assert d.reads_bits["main"]["kv_cache"] == 2 * 8 * 30 * 8


def test_kv_home_global_buffer_must_hold_the_cache() -> None:
    arch = tiny_arch(**{"attention.kv_home": "global_buffer", "memory.global_buffer.size_kib": 1})
    wl = step_workload(TINY, "tiny", 1, 200)  # 2 blocks x K + V x 2 heads x 8 x 200 x 8 bits
    with pytest.raises(PacimError, match="does not fit in attention.kv_home global_buffer"):
        simulate(arch, wl, data=False)
    r = simulate(tiny_arch(**{"attention.kv_home": "global_buffer"}), wl, data=False)
    assert r.summary["attention"]["kv_reads_bits"] == 2 * 2 * 2 * 199 * 8 * 8
    by = r.summary["memory"]["by_level"]
    assert by["global_buffer"]["reads_by_kind"]["kv_cache"] == 2 * 2 * 2 * 199 * 8 * 8
    assert by["main"]["reads_by_kind"].get("kv_cache", 0) == 0


def test_periphery_ops_closed_form_and_energy() -> None:
    ops = periphery_ops(TINY, 3, 10)
    assert ops == {"rmsnorm": 3 * 32 * (2 * 2 + 1), "rope": 2 * 3 * (4 + 2) * 8,
                   "softmax": 2 * 3 * 4 * 10, "swiglu": 2 * 3 * 48}
    arch = tiny_arch()
    c = periphery_counts(arch, "periphery", ops)
    assert c.cycles == math.ceil(sum(ops.values()) / arch.attention.periphery_ops_per_cycle)
    from pacim.energy import layer_energy

    e = layer_energy(arch, c)
    want = sum(n * getattr(arch.energy, f"{k}_op").value for k, n in ops.items())
    assert e["periphery"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("mapping", ["cim", "digital"])
def test_every_mac_is_mapped_with_attention_set(mapping: str) -> None:
    arch = load_arch("pacim_65nm", {"attention.mapping": mapping})
    s = simulate(arch, "llm-layer", data=False, tokens=16).summary
    assert s["unmapped_macs"] == 0 and s["mapped_macs"] == s["macs"]
    assert s["ops"] == 2 * s["macs"]
    br = s["energy_breakdown_pj"]
    assert br["periphery"] > 0
    assert (br["kv_write"] > 0) == (mapping == "cim")
    assert (br["digital_unit"] > 0) == (mapping == "digital")
    assert s["energy_pj"] == pytest.approx(sum(br.values()), rel=1e-12)


def test_combine_sums_exactly() -> None:
    arch = tiny_arch()
    a = attention_counts(arch, matmul_layer("x", 1, 8, 5, count=4, group=2, cached=32))
    b = attention_counts(arch, matmul_layer("x", 1, 8, 6, count=4, group=2, cached=40))
    c = combine([a, b], repeat=3)
    assert c.cycles == 3 * (a.cycles + b.cycles)
    assert c.kv_cell_write_bits == 3 * (a.kv_cell_write_bits + b.kv_cell_write_bits)
    assert c.reads_bits["main"]["kv_cache"] == 3 * (a.reads_bits["main"]["kv_cache"]
                                                     + b.reads_bits["main"]["kv_cache"])
    assert c.stall_cycles["kv_load"] == 3 * (a.stall_cycles["kv_load"]
                                             + b.stall_cycles["kv_load"])


# --- phases -------------------------------------------------------------------------------
def _tiny_workload(q: int, kv: int):
    return step_workload(TINY, "tiny", q, kv)


@pytest.mark.parametrize("mapping", ["cim", "digital", None])
@pytest.mark.parametrize("chip", ["pacim_65nm", "jia_bpbs_65nm"])
def test_decode_equals_step_by_step(mapping: str | None, chip: str) -> None:
    """The extrapolated decode (linear layers once, attention summed over KV lengths) equals
    simulating each of its steps in full."""
    arch = tiny_arch(mapping, chip)
    context, tokens = 5, 7
    ph = simulate_phase(arch, _tiny_workload(1, 1), "decode", context=context, tokens=tokens)
    steps = decode_steps(arch, TINY, "tiny", context, tokens)
    s = ph.summary
    for key in ("cycles", "macs", "mapped_macs", "weight_reloads"):
        assert s[key] == sum(r.summary[key] for r in steps), key
    for lv, d in s["memory"]["by_level"].items():
        for way in ("reads_by_kind", "writes_by_kind"):
            for kind, bits in d[way].items():
                assert bits == sum(r.summary["memory"]["by_level"][lv][way].get(kind, 0)
                                   for r in steps), (lv, way, kind)
    assert s["energy_pj"] == pytest.approx(sum(r.summary["energy_pj"] for r in steps),
                                           rel=1e-9)
    for cause, cyc in s["stall_cycles"].items():
        assert cyc == sum(r.summary["stall_cycles"].get(cause, 0) for r in steps), cause
    p = s["phase"]
    assert p["steps"] == tokens and p["kv_length_final"] == context + tokens
    assert p["energy_per_token_pj"] == pytest.approx(s["energy_pj"] / tokens)
    assert p["tokens_per_s"] == pytest.approx(tokens / s["latency_s"])
    if mapping is not None:
        assert s["unmapped_macs"] == 0
        kvh, dh, wbit = TINY.kv_heads, TINY.head_dim, arch.macro.wbit
        # K and V of every block: cached positions read, the new token's written, per step
        reads = sum(2 * TINY.blocks * kvh * (context + i) * dh * wbit for i in range(tokens))
        assert p["traffic_by_kind"]["kv_reads_bits"] == reads
        assert p["traffic_by_kind"]["kv_writes_bits"] == 2 * TINY.blocks * kvh * dh * wbit \
            * tokens
    else:
        assert s["unmapped_macs"] > 0 and p["traffic_by_kind"]["kv_reads_bits"] == 0


def test_prefill_is_one_step_of_t_tokens() -> None:
    arch = tiny_arch()
    ph = simulate_phase(arch, _tiny_workload(1, 1), "prefill", context=3, tokens=6).summary
    ref = simulate(arch, _tiny_workload(6, 9), data=False).summary
    assert ph["cycles"] == ref["cycles"] and ph["phase"]["steps"] == 1
    assert ph["energy_pj"] == pytest.approx(ref["energy_pj"], rel=1e-12)
    assert ph["attention"]["kv_reads_bits"] == 2 * 2 * 2 * 3 * 8 * 8  # the 3 cached positions


def test_step_layers_match_the_llm_layer_workload() -> None:
    from pacim.workloads import load_workload

    wl = load_workload("llm-layer", data=False, tokens=12, hidden=64, ffn=96, heads=4,
                       kv_heads=2)
    shape = LlmShape.of(wl)
    mine = step_layers(shape, 12, 12)
    assert [la.shape_dict() for la in mine] == [la.shape_dict() for la in wl.layers]
    assert [(la.group, la.cached) for la in mine] == [(la.group, la.cached) for la in wl.layers]
    assert sum(c.cycles for c in schedule(load_arch("pacim_65nm"), wl)) > 0


def test_phase_bad_input() -> None:
    arch = tiny_arch()
    wl = _tiny_workload(1, 1)
    with pytest.raises(PacimError, match="phase must be one of"):
        simulate_phase(arch, wl, "generate", tokens=2)
    with pytest.raises(PacimError, match="context must be >= 0"):
        simulate_phase(arch, wl, "decode", context=-1, tokens=2)
    with pytest.raises(PacimError, match="tokens must be >= 1"):
        simulate_phase(arch, wl, "decode", tokens=0)
    with pytest.raises(PacimError, match="not an LLM workload"):
        simulate_phase(arch, "resnet18-cifar", "decode", tokens=2)


# --- the command line ---------------------------------------------------------------------
LLM = ["simulate", "--arch", "pacim_65nm", "--workload", "llm-layer", "-q"]


@pytest.mark.parametrize("args,needles", [
    (["--context", "4", "--no-data"], ["--context needs --phase"]),
    (["--phase", "decode", "--tokens", "2"], ["--phase needs --no-data"]),
    (["--phase", "decode", "--no-data"], ["--phase needs --tokens"]),
    (["--phase", "generate", "--tokens", "2", "--no-data"], ["--phase"]),
    (["--phase", "decode", "--context", "-1", "--tokens", "2", "--no-data"], ["--context"]),
    (["--phase", "prefill", "--tokens", "2", "--no-data", "--trace", "t.csv"],
     ["--trace cannot be combined with --phase"]),
    (["--set", "attention.mapping=analog", "--no-data"], ["attention.mapping"]),
    (["--set", "attention.mapping=cim", "--set", "attention.kv_home=global_buffer",
      "--phase", "decode", "--context", "100000", "--tokens", "2", "--no-data"],
     ["does not fit in attention.kv_home global_buffer"]),
])
def test_cli_bad_phase_input(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    from tests.test_cli_errors import one_error_line, pacim

    one_error_line(pacim(*LLM, *args, cwd=tmp_path), *needles)
    assert not (tmp_path / "t.csv").exists()


def test_cli_not_an_llm_workload(tmp_path: Path) -> None:
    from tests.test_cli_errors import one_error_line, pacim

    r = pacim("simulate", "--arch", "pacim_65nm", "--workload", "resnet18-cifar", "--phase",
              "decode", "--tokens", "2", "--no-data", cwd=tmp_path)
    one_error_line(r, "not an LLM workload")


def test_cli_decode_json(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pacim.cli import main

    out = tmp_path / "d.json"
    r = CliRunner().invoke(main, [*LLM, "--set", "attention.mapping=cim", "--phase", "decode",
                                  "--context", "8", "--tokens", "3", "--no-data", "--set",
                                  "macro.banks=64", "--json", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "tokens/s" in r.output and "attention cim" in r.output
    d = json.loads(out.read_text())
    p = d["phase"]
    assert p["name"] == "decode" and p["tokens"] == 3 and p["context"] == 8
    assert d["unmapped_macs"] == 0 and p["weight_reloads_per_step"] > 0
    assert set(p["traffic_by_kind"]) == {"weights", "activations", "kv_reads_bits",
                                         "kv_writes_bits", "counts"}
    assert any(la["name"] == "periphery" for la in d["layers"])


def test_decode_4096_after_2048_fits_in_1_gib() -> None:
    """The issue's scale target, under RLIMIT_AS 1 GiB in a fresh process (its time is
    benchmarks/bench_phase.py's ratio)."""
    import subprocess
    import sys
    import textwrap

    from tests.test_sched_memory import GIB, _limited

    code = textwrap.dedent("""
        import json
        from pacim.arch import load_arch
        from pacim.phase import simulate_phase
        arch = load_arch("pacim_65nm", {"attention.mapping": "cim"})
        p = simulate_phase(arch, "llm-layer", "decode", context=2048, tokens=4096).summary
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
        print(json.dumps({"steps": p["phase"]["steps"], "rss": int(hwm[0].split()[1]) * 1024,
                          "unmapped": p["unmapped_macs"]}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, preexec_fn=_limited(GIB))
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert d["steps"] == 4096 and d["unmapped"] == 0 and d["rss"] < GIB


# --- a real model's shape -----------------------------------------------------------------
def _smollm2_shape() -> LlmShape:
    pytest.importorskip("gguf")
    from pacim.llm.workload import llm_shape_of

    try:
        return llm_shape_of("smollm2-135m")
    except PacimError as e:  # no network and no cached download
        pytest.skip(f"SmolLM2-135M not available: {e}")


def test_smollm2_decode_shape_and_kv() -> None:
    """SmolLM2-135M: 30 blocks, 9 heads on 3 KV heads of 64; decode maps every MAC and reads
    the cached K and V of every block each step."""
    shape = _smollm2_shape()
    assert (shape.blocks, shape.heads, shape.kv_heads, shape.head_dim) == (30, 9, 3, 64)
    arch = load_arch("pacim_65nm", {"attention.mapping": "cim"})
    s = simulate_phase(arch, "smollm2-135m", "decode", context=32, tokens=4).summary
    assert s["unmapped_macs"] == 0 and s["workload"].endswith("-decode")
    wbit = arch.macro.wbit
    reads = sum(2 * 30 * 3 * (32 + i) * 64 * wbit for i in range(4))
    assert s["phase"]["traffic_by_kind"]["kv_reads_bits"] == reads
    lin = sum(la.macs for la in step_layers(shape, 1, 1) if la.kind == "linear")
    att = 2 * 30 * 9 * 64 * sum(33 + i for i in range(4))
    assert s["macs"] == 4 * lin + att


# --- a KV cache resident in the banks (attention.kv_banks) ---------------------------------
# 2 blocks, 2 KV heads of head dim 16 on pacim_65nm (16 banks of 256 rows x 64 columns, 8-bit
# K / V): a K^T tile holds 16 x 64 positions, a V tile 256 positions x 16, so P positions take
# 2 blocks x 2 heads x (ceil(P / 64) + ceil(P / 256)) tiles: 8 banks hold P = 64.
RES = LlmShape(blocks=2, hidden=32, ffn=48, heads=4, kv_heads=2, head_dim=16, head_out=0)
RES_BITS = 2 * 16 * 8  # K (or V) bits of one position of one layer: 2 KV heads x 16 x 8 bits


def _res_arch(kv_banks: int) -> object:
    return load_arch("pacim_65nm", {"attention.mapping": "cim", "attention.kv_banks": kv_banks})


@pytest.mark.parametrize(("kv_banks", "positions"), [(0, 0), (7, 0), (8, 64), (12, 128)])
def test_resident_positions_closed_form(kv_banks: int, positions: int) -> None:
    from pacim.sched.kv_resident import resident_positions

    arch = _res_arch(kv_banks)
    assert resident_positions(arch, step_layers(RES, 1, 100)) == positions


def test_resident_kv_writes_reads_per_decode_step() -> None:
    """Decode 10 tokens after 60 with 8 KV banks (P = 64): a step at KV length L writes the
    new position into the cells and nothing else while L <= 64; beyond, positions 64..L-1 are
    the overflow: the cached ones are read from kv_home and every overflow position is written
    into the scratch cells, the new one also written to kv_home. Per layer and step:
    reads RES_BITS (L - 65)+, kv_home writes RES_BITS [L > 64], cell writes RES_BITS x
    (1 if L <= 64 else L - 64); 4 attention layers."""
    context, tokens = 60, 10
    ph = simulate_phase(_res_arch(8), step_workload(RES, "res", 1, 1), "decode",
                        context=context, tokens=tokens).summary
    lengths = range(context + 1, context + tokens + 1)
    att = ph["attention"]
    assert att["kv_reads_bits"] == 4 * RES_BITS * sum(max(0, L - 65) for L in lengths)
    assert att["kv_reads_bits"] == 4 * RES_BITS * 15
    assert att["kv_writes_bits"] == 4 * RES_BITS * sum(L > 64 for L in lengths) == 4 * 256 * 6
    assert att["kv_cell_write_bits"] == 4 * RES_BITS * sum(1 if L <= 64 else L - 64
                                                           for L in lengths) == 4 * 256 * 25
    assert ph["phase"]["traffic_by_kind"]["kv_reads_bits"] == att["kv_reads_bits"]
    # without the resident cache every step re-reads all cached positions and rewrites them all
    ph0 = simulate_phase(_res_arch(0), step_workload(RES, "res", 1, 1), "decode",
                         context=context, tokens=tokens).summary["attention"]
    assert ph0["kv_reads_bits"] == 4 * RES_BITS * sum(L - 1 for L in lengths)
    assert ph0["kv_cell_write_bits"] == 4 * RES_BITS * sum(lengths)
    assert ph0["kv_writes_bits"] == 4 * RES_BITS * tokens


def test_resident_step_cycles_and_linear_banks() -> None:
    """One resident step (L = 61): QK^T computes its 2 tiles in one pass (2 left rows x 64
    exact bit pairs) after writing the new column down 16 rows (16 cycles); PV after writing
    one 128-bit row at 64 bits a cycle (2 cycles). The linear layers run on the 8 other banks."""
    arch = _res_arch(8)
    layers = {la.name.rsplit(".", 1)[-1]: la for la in step_layers(RES, 1, 61)[:9]}
    qk, pv = (attention_counts(arch, layers[n], 64) for n in ("attn_qk", "attn_pv"))
    assert (qk.compute_cycles, qk.stall_cycles["kv_load"], qk.cycles) == (128, 16, 144)
    assert (pv.compute_cycles, pv.stall_cycles["kv_load"], pv.cycles) == (128, 2, 130)
    assert qk.kv_cell_write_bits == pv.kv_cell_write_bits == RES_BITS
    assert qk.kv_occupancy_bits == 61 * RES_BITS
    assert qk.reads_bits["main"]["kv_cache"] == 0
    wl = step_workload(RES, "res", 1, 61)
    rep = simulate(arch, wl, data=False)
    eight = schedule(load_arch("pacim_65nm", {"macro.banks": 8}), wl)
    got = {d["name"]: d["cycles"] for d in rep.layers}
    assert all(got[c.name] == c.cycles for c in eight)
    assert rep.summary["unmapped_macs"] == 0


def test_resident_decode_equals_step_by_step() -> None:
    arch = _res_arch(8)
    ph = simulate_phase(arch, step_workload(RES, "res", 1, 1), "decode", context=58,
                        tokens=9).summary
    steps = [r.summary for r in decode_steps(arch, RES, "res", 58, 9)]
    for key in ("cycles", "macs", "weight_reloads"):
        assert ph[key] == sum(s[key] for s in steps), key
    for key in ("kv_reads_bits", "kv_writes_bits", "kv_cell_write_bits"):
        assert ph["attention"][key] == sum(s["attention"][key] for s in steps), key
    assert ph["energy_pj"] == pytest.approx(sum(s["energy_pj"] for s in steps), rel=1e-9)


@pytest.mark.parametrize(("setting", "needle"), [
    ({"attention.mapping": "digital", "attention.kv_banks": 2}, "needs attention.mapping cim"),
    ({"attention.mapping": "cim", "attention.kv_banks": 16}, "must leave the linear layers"),
])
def test_bad_kv_banks(setting: dict, needle: str) -> None:
    with pytest.raises(PacimError, match=needle):
        load_arch("pacim_65nm", setting)
