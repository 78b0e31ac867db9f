"""Attention on the PAC macro in the cost model (issue 19): attention.pac, attention.kv_bits /
input_bits and `pacim simulate --setting`, against closed forms and step-by-step decode."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from pacim.arch import load_arch
from pacim.cli import main
from pacim.errors import ConfigError
from pacim.macro.core import digital_set, pac_products
from pacim.phase import COUNT_KINDS, decode_steps, simulate_phase, step_workload
from pacim.sched import attention_counts
from pacim.sched.attention import attention_precision, kv_bits
from pacim.workloads.ir import matmul_layer
from pacim.workloads.llm_shape import LlmShape

TINY = LlmShape(blocks=2, hidden=32, ffn=48, heads=4, kv_heads=2, head_dim=8, head_out=40)
SMALL = {"macro.banks": 3, "macro.rows": 8, "macro.cols": 4, "attention.mapping": "cim"}


def arch(**kw: object):
    return load_arch("pacim_65nm", {**SMALL, **kw})


def cw(rows: int) -> int:
    return rows.bit_length()  # a count of ones over `rows` rows takes 0..rows


@pytest.mark.parametrize("ib,kb,op", [(8, 8, 4), (8, 4, 4), (8, 8, 3), (6, 8, 5)])
def test_precision_is_the_static_digital_set(ib: int, kb: int, op: int) -> None:
    a = arch(**{"attention.pac": True, "attention.input_bits": ib, "attention.kv_bits": kb,
                "pac.operand": op, "pac.dynamic": None})
    pr = attention_precision(a)
    d = digital_set(ib, kb, op)
    assert pr.steps == min(op, ib) * min(op, kb) == int(d.sum())
    assert (pr.cell_planes, pr.x_planes) == (min(op, kb), min(op, ib))
    assert pr.x_cnt == int((~d).any(axis=0).sum()) and pr.w_cnt == int((~d).any(axis=1).sum())
    assert pr.products == pac_products(d) and pr.baseline_steps == ib * kb
    exact = attention_precision(arch(**{"attention.input_bits": ib, "attention.kv_bits": kb}))
    assert (exact.steps, exact.cell_planes, exact.products) == (ib * kb, kb, 0)


@pytest.mark.parametrize("kv", [1, 6, 9, 17])
def test_one_decode_step_on_pac_closed_form(kv: int) -> None:
    """QK^T (1 x dh @ dh x kv per KV head) and PV (1 x kv @ kv x dh) of one decode step."""
    a = arch(**{"attention.pac": True})
    m, rows = a.macro, a.macro.rows
    h, kvh, dh = TINY.heads, TINY.kv_heads, TINY.head_dim
    ib = kb = 8
    # 8b x 8b at operand 4: 16 of 64 pairs digital; every plane of each operand has some
    # approximated pair (the (MSB, LSB) ones too), so PAC counts all 8 of each
    steps, cp, xc, wc, prod = 16, 4, 8, 8, 2
    v = h // kvh
    cached = (kv - 1) * dh
    qk = matmul_layer("qk", 1, dh, kv, count=h, group=v, cached=cached, kv_axis="k")
    pv = matmul_layer("pv", 1, kv, dh, count=h, group=v, cached=cached, kv_axis="n")
    for la, n, k in ((qk, dh, kv), (pv, kv, dh)):
        c = attention_counts(a, la)
        rt, ct = math.ceil(n / rows), math.ceil(k / m.cols)
        tiles = kvh * rt * ct
        passes = math.ceil(tiles / m.banks)
        assert c.kv_cell_write_bits == kvh * n * k * cp  # the kept planes, every step
        assert c.compute_cycles == passes * v * steps and not c.exact
        assert c.bit_serial_cycles == tiles * v * steps
        assert c.bit_serial_cycles_baseline == tiles * v * ib * kb
        assert c.pac_ops == kvh * v * k * rt * prod
        assert c.encoder_bits == kvh * dh * wc + kvh * v * n * xc  # the new K / V, each row
        # at kv_home: the kept planes (kv_cache) and the count words (kv_counts)
        rd, wr = kvh * (kv - 1) * dh * cp, kvh * dh * cp
        if la is qk:  # a position is a column: its counts per row tile
            per = math.ceil(dh / rows) * wc * cw(min(dh, rows))
            rc, wcn = kvh * (kv - 1) * per, kvh * per
        else:  # a position is a row: its row tile's column counts are rewritten
            per = dh * wc * cw(min(kv, rows))
            rc = kvh * math.ceil((kv - 1) / rows) * per
            wcn = kvh * (math.ceil(kv / rows) - (kv - 1) // rows) * per
        assert c.reads_bits["main"]["kv_cache"] == rd
        assert c.writes_bits["main"]["kv_cache"] == wr
        assert c.reads_bits["main"]["kv_counts"] == rc
        assert c.writes_bits["main"]["kv_counts"] == wcn
        assert c.writes_bits["bank_buffer"]["kv_counts"] == kvh * k * rt * wc * cw(min(n, rows))
        assert c.cycles == (c.stall_cycles["kv_load"] + c.compute_cycles
                            + c.stall_cycles["memory"] + c.stall_cycles.get("encoder", 0)
                            + c.stall_cycles.get("pac_engine", 0))


def test_kv_bits_set_the_cache_and_the_cells() -> None:
    la = matmul_layer("pv", 1, 12, 8, count=4, group=2, cached=11 * 8, kv_axis="n")
    full, half = arch(), arch(**{"attention.kv_bits": 4})
    c8, c4 = attention_counts(full, la), attention_counts(half, la)
    assert c4.reads_bits["main"]["kv_cache"] * 2 == c8.reads_bits["main"]["kv_cache"]
    assert c4.kv_cell_write_bits * 2 == c8.kv_cell_write_bits
    assert c4.compute_cycles * 2 == c8.compute_cycles  # 8 x 4 bit pairs instead of 8 x 8
    assert kv_bits(half, la) == 2 * 12 * 8 * 4
    jia = load_arch("jia_bpbs_65nm", {**SMALL, "macro.cols": 16, "attention.kv_bits": 4})
    cj = attention_counts(jia, la)  # a bp_bs bank holds cols / kv_bits channels
    assert cj.col_tiles == math.ceil(8 / (16 // 4))


def test_pac_cuts_the_attention_cycles_and_energy() -> None:
    """On the shipped macro and a head dim of 64, keeping 4 planes + counts halves the KV."""
    shape = LlmShape(blocks=1, hidden=128, ffn=192, heads=2, kv_heads=1, head_dim=64,
                     head_out=0)
    wl = step_workload(shape, "small", 1, 64)
    ex, pac = (simulate_phase(load_arch("pacim_65nm", {"attention.mapping": "cim",
                                                       "attention.pac": p}),
                              wl, "decode", context=300, tokens=4).summary
               for p in (False, True))
    ae, ap = ex["attention"], pac["attention"]
    assert ap["pac"] and ap["operand"] == 4 and not ae["pac"]
    assert ap["bit_serial_cycles"] * 4 == ap["bit_serial_cycles_baseline"]  # 16 of 64 pairs
    assert ae["bit_serial_cycles"] == ae["bit_serial_cycles_baseline"]
    assert ap["kv_reads_bits"] < 0.6 * ae["kv_reads_bits"]
    assert ap["pac_ops"] > 0 == ae["pac_ops"]
    assert pac["energy_pj"] < ex["energy_pj"]
    # the phase block's count words: every level's count kinds, a part of the three kinds
    for r in (ex, pac):
        t, lv = r["phase"]["traffic_by_kind"], r["memory"]["by_level"].values()
        for way, key in (("reads_bits", "reads_by_kind"), ("writes_bits", "writes_by_kind")):
            assert t["counts"][way] == sum(v for m in lv for k, v in m.get(key, {}).items()
                                           if k in COUNT_KINDS)  # fmt: skip
        assert 0 < t["counts"]["reads_bits"] < t["weights"]["reads_bits"] + t["kv_reads_bits"] \
            + t["activations"]["reads_bits"]

    def by_kind(r: dict, kind: str) -> int:
        lv = r["memory"]["by_level"].values()
        return sum(m.get("reads_by_kind", {}).get(kind, 0) for m in lv)

    # attention on PAC adds K / V count words and the streamed inputs' plane counts; the
    # linear layers' weight counts are the same
    assert by_kind(pac, "kv_counts") > 0 == by_kind(ex, "kv_counts")
    assert by_kind(pac, "w_counts") == by_kind(ex, "w_counts")
    added = by_kind(pac, "sparsity_counts") - by_kind(ex, "sparsity_counts")
    assert added > 0  # the queries' and probabilities' plane counts, from the encoder


@pytest.mark.parametrize("kv_banks", [0, 1])
def test_decode_on_pac_equals_step_by_step(kv_banks: int) -> None:
    a = arch(**{"attention.pac": True, "attention.kv_banks": kv_banks, "macro.banks": 4})
    context, tokens = 5, 6
    s = simulate_phase(a, step_workload(TINY, "tiny", 1, 1), "decode", context=context,
                       tokens=tokens).summary
    steps = decode_steps(a, TINY, "tiny", context, tokens)
    for key in ("cycles", "macs", "mapped_macs"):
        assert s[key] == sum(r.summary[key] for r in steps), key
    for key in ("kv_reads_bits", "kv_writes_bits", "kv_cell_write_bits", "pac_ops",
                "bit_serial_cycles"):
        assert s["attention"][key] == sum(r.summary["attention"][key] for r in steps), key
    assert s["energy_pj"] == pytest.approx(sum(r.summary["energy_pj"] for r in steps), rel=1e-9)


@pytest.mark.parametrize("setting,needle", [
    ({"attention.pac": True, "attention.mapping": None}, "attention.pac needs"),
    ({"attention.pac": True, "pac.enabled": False}, "attention.pac needs"),
    ({"attention.kv_bits": 0}, "attention.kv_bits"),
    ({"attention.input_bits": 17}, "attention.input_bits"),
])
def test_bad_settings_are_named(setting: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        arch(**setting)


def test_simulate_setting_holds_the_kv_cache_at_its_bits(tmp_path) -> None:
    base = ["simulate", "--arch", "pacim_65nm", "--workload", "llm-layer", "--no-data",
            "--set", "attention.mapping=cim", "--phase", "decode", "--tokens", "4",
            "--context", "60", "-q", "--no-progress"]
    run = CliRunner().invoke
    out = {}
    for st in ("w8a8skv8", "w4a4skv4"):
        r = run(main, [*base, "--setting", st, "--json", str(tmp_path / f"{st}.json")])
        assert r.exit_code == 0, r.output
        out[st] = json.loads((tmp_path / f"{st}.json").read_text())["attention"]
    assert (out["w8a8skv8"]["kv_bits"], out["w4a4skv4"]["kv_bits"]) == (8, 4)
    assert out["w4a4skv4"]["kv_reads_bits"] * 2 == out["w8a8skv8"]["kv_reads_bits"]
    for extra, needle in ((["--setting", "w8a8"], "no KV part"),
                          (["--setting", "w4a4gkv4"], "group-wise"),
                          (["--setting", "w4a4skv4", "--set", "attention.kv_bits=4"],
                           "both set the KV bits"),
                          (["--setting", "bogus"], "bad quantization setting")):
        r = run(main, [*base, *extra])
        assert r.exit_code == 2 and needle in r.output, r.output
        assert "Traceback" not in r.output
    r = run(main, [*base[:6], "--setting", "w4a4skv4", "--phase", "decode", "--tokens", "2",
                   "-q"])
    assert r.exit_code == 2 and "needs attention.mapping" in r.output, r.output
