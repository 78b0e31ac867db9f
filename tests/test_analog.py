"""The analog BP/BS model (pacim.macro.analog) against a slow reference written from its spec,
closed forms (exactness), properties (SQNR monotone in ADC bits and noise) and the scheduler."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacim.arch import load_arch
from pacim.errors import ConfigError
from pacim.macro import activations_from_codes, apply, prepare_weight, quantize_activations
from pacim.macro import analog as am
from pacim.macro import analog_kernels as ak
from pacim.macro.analog import AnalogADC
from pacim.quant import QTensor

MASK = (1 << 64) - 1


def splitmix(z: int) -> int:
    """splitmix64 of counter z, in plain Python integers (independent of the kernel)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def kernel_normals(key: np.uint64, start: int, n: int) -> np.ndarray:
    out = np.empty(n)
    return ak.normals(key, np.uint64(start), out, np.empty(n), np.empty(n, dtype=np.int64))


def operands(rng: np.random.Generator, p: int, k: int, n: int, xbit: int, wbit: int,
             dx: float = 0.5, dw: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Random codes whose planes have ones-densities about dx / dw."""
    qx = sum((rng.random((p, n)) < dx).astype(np.int64) << j for j in range(xbit))
    qw = sum((rng.random((k, n)) < dw).astype(np.int64) << i for i in range(wbit))
    return qx, qw


def linear_operands(qx: np.ndarray, qw: np.ndarray, xbit: int, wbit: int):
    act = activations_from_codes(qx.astype(np.uint16), xbit, 1.0, 0.0)
    pw = prepare_weight(QTensor(q=qw.astype(np.uint16), scale=1.0, bias=0.0, bits=wbit))
    return act, pw


def reference(qx: np.ndarray, qw: np.ndarray, xbit: int, wbit: int, adc: AnalogADC
              ) -> np.ndarray:
    """Shift-added codes, tile by tile and bit pair by bit pair (numpy, the spec's loop)."""
    p_, n = qx.shape
    k_ = qw.shape[0]
    tiles = adc.tiles(n)
    acc = np.zeros((p_, k_))
    for t, (n0, n1) in enumerate(tiles):
        for i in range(wbit):
            wi = (qw[:, n0:n1] >> i) & 1
            for j in range(xbit):
                s = ((qx[:, n0:n1] >> j) & 1) @ wi.T
                z = None
                if adc.noisy:
                    z = np.stack([kernel_normals(adc.key(), ((((adc.row0 + p) * len(tiles) + t)
                                                              * xbit + j) * wbit + i) * k_, k_)
                                  for p in range(p_)])
                acc += adc.codes(s, z) * 2.0 ** (i + j)
    return acc


def im2col(codes: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """(P, kh*kw*C) windows of padded NHWC codes, columns in (dy, dx, c) order."""
    b, hp, wp, _ = codes.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    rows = [codes[bb, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw].reshape(-1)
            for bb in range(b) for oy in range(ho) for ox in range(wo)]
    return np.asarray(rows, dtype=np.int64)


# --- the noise -----------------------------------------------------------------------------

def test_normals_are_the_inverse_cdf_of_a_splitmix_uniform() -> None:
    key = AnalogADC(seed=7, stream=3).key()
    start, n = 12345, 20000
    z = kernel_normals(key, start, n)
    inv = NormalDist().inv_cdf
    ref = [inv(((splitmix(int(key) ^ (start + t)) >> 11) + 0.5) * 2.0 ** -53) for t in range(n)]
    assert np.max(np.abs(z - ref)) < 1e-7
    assert (np.abs(z) > 1.97).mean() == pytest.approx(0.0488, abs=0.01)  # tails exercised
    assert abs(z.mean()) < 0.03 and z.std() == pytest.approx(1.0, abs=0.02)


# --- against the reference -----------------------------------------------------------------

CASES = [  # (xbit, wbit, rows, n, adc keywords)
    (4, 4, 768, 700, {}),
    (4, 4, 64, 300, {"full_scale": 0.25}),  # 5 tiles, clipping
    (3, 5, 100, 250, {"gain": 0.97, "offset": 0.3}),
    (2, 1, 50, 120, {"noise_lsb": 0.8, "seed": 3}),
    (1, 3, 16, 40, {"noise_lsb": 0.5, "nonlinear_lsb": 2.0, "offset": -0.4, "row0": 11}),
    (8, 8, 255, 600, {"bits": 6, "noise_lsb": 1.0, "full_scale": 0.5}),
]


@pytest.mark.parametrize("xbit, wbit, rows, n, kw", CASES)
def test_linear_matches_reference(xbit: int, wbit: int, rows: int, n: int, kw: dict) -> None:
    rng = np.random.default_rng(xbit * 31 + wbit)
    qx, qw = operands(rng, 9, 7, n, xbit, wbit, 0.3, 0.6)
    adc = AnalogADC(**{"bits": 8, "rows": rows, **kw})
    act, pw = linear_operands(qx, qw, xbit, wbit)
    parts, stats = am.compute(act, pw, adc)
    assert np.array_equal(parts.digital, reference(qx, qw, xbit, wbit, adc))
    assert parts.unit == adc.lsb
    tiles = len(adc.tiles(n))
    assert stats.conversions == 9 * 7 * tiles * xbit * wbit == sum(stats.column_sum_hist)
    assert stats.tiles == tiles


def test_conv_with_stride_and_padding_matches_reference() -> None:
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((2, 20, 7, 7)), 0.0)
    w = rng.standard_normal((6, 20, 3, 3))
    act = quantize_activations(x, 3, kernel=(3, 3), stride=2, pads=(1, 1, 1, 1))
    pw = prepare_weight(w, 4)
    adc = AnalogADC(bits=5, rows=50, noise_lsb=0.7, seed=1)  # 180 rows: 4 tiles
    parts, _ = am.compute(act, pw, adc)
    qx = im2col(act.codes, 3, 3, 2)
    assert np.array_equal(parts.digital, reference(qx, pw.matrix.astype(np.int64), 3, 4, adc))


def test_blocking_and_chunking_do_not_change_the_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    qx, qw = operands(rng, 40, 8, 90, 3, 3)
    adc = AnalogADC(bits=6, rows=32, noise_lsb=1.0, seed=9, stream=4)
    act, pw = linear_operands(qx, qw, 3, 3)
    whole = am.compute(act, pw, adc)[0].digital
    monkeypatch.setattr(am, "ROW_BLOCK_ELEMS", 90 * 7)  # 7 rows per block
    assert np.array_equal(am.compute(act, pw, adc)[0].digital, whole)
    parts = [am.compute(linear_operands(qx[a:b], qw, 3, 3)[0], pw, adc.with_stream(4, a))[0]
             for a, b in ((0, 13), (13, 40))]
    assert np.array_equal(np.concatenate([p.digital for p in parts]), whole)
    other = am.compute(act, pw, adc.with_stream(5))[0].digital
    assert not np.array_equal(other, whole)


# --- exactness (closed form) -----------------------------------------------------------------

@pytest.mark.parametrize("rows", [16, 100, 255, 256, 768])
@pytest.mark.parametrize("bits", range(1, 9))
def test_exact_when_the_adc_holds_every_column_sum(rows: int, bits: int) -> None:
    """One code per unit column sum and b = bit_length(rows): the exact integers, to the bit."""
    rng = np.random.default_rng(rows + bits)
    n = 2 * rows + 7  # three tiles, the last one partial
    qx, qw = operands(rng, 6, 5, n, bits, bits, 0.9, 0.9)  # dense: sums near the top
    act, pw = linear_operands(qx, qw, bits, bits)
    adc = AnalogADC(bits=rows.bit_length(), rows=rows, full_scale=None)
    assert adc.is_exact()
    parts, stats = am.compute(act, pw, adc)
    assert np.array_equal(parts.mac(), (qx @ qw.T).astype(np.float64))
    assert stats.clipped == 0
    y, _ = apply(act, pw, operand=bits, analog=adc)
    assert np.array_equal(y, apply(act, pw, operand=bits)[0])


def test_full_scale_rows_is_exact_when_levels_equal_rows() -> None:
    rng = np.random.default_rng(0)
    qx, qw = operands(rng, 5, 4, 600, 4, 4, 0.95, 0.95)
    act, pw = linear_operands(qx, qw, 4, 4)
    adc = AnalogADC(bits=8, rows=255, full_scale=1.0)
    assert adc.lsb == 1.0 and adc.is_exact()
    assert np.array_equal(am.compute(act, pw, adc)[0].mac(), (qx @ qw.T).astype(np.float64))


def test_not_exact_when_sums_exceed_the_codes() -> None:
    rng = np.random.default_rng(1)
    qx, qw = operands(rng, 5, 4, 300, 2, 2, 0.9, 0.9)
    act, pw = linear_operands(qx, qw, 2, 2)
    adc = AnalogADC(bits=7, rows=300, full_scale=None)  # top code 127 < sums near 240
    assert not adc.is_exact()
    parts, stats = am.compute(act, pw, adc)
    assert stats.clipped > 0
    assert (parts.mac() < qx @ qw.T).all()
    assert not AnalogADC(bits=10, rows=768, full_scale=1.0).is_exact()  # LSB 0.75: not a grid


# --- properties ----------------------------------------------------------------------------

def mac_error(qx: np.ndarray, qw: np.ndarray, bits: int, adc: AnalogADC) -> float:
    act, pw = linear_operands(qx, qw, bits, bits)
    e = am.compute(act, pw, adc, stats=False)[0].mac() - qx @ qw.T
    return float((e * e).sum())


def non_increasing(v: list[float]) -> bool:
    return all(a >= b for a, b in zip(v, v[1:], strict=False))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), bits=st.integers(1, 8), rows=st.sampled_from([64, 256, 768]),
       n=st.integers(100, 1600), dx=st.floats(0.05, 0.9), dw=st.floats(0.1, 0.9))
def test_sqnr_falls_as_adc_bits_fall_and_noise_rises(seed: int, bits: int, rows: int, n: int,
                                                     dx: float, dw: float) -> None:
    """Random data, where it holds (see the next two tests for where it does not):
    - at one code per row (FS = 2^b - 1: fewer bits clip more, every error an undershoot);
    - with at least half an LSB of noise, which decorrelates the rounding (full scale = rows);
    - in noise from half an LSB up, at 8 bits; and from no noise up where the ADC holds every
      column sum."""
    rng = np.random.default_rng(seed)
    qx, qw = operands(rng, 48, 24, n, bits, bits, dx, dw)
    unit = [mac_error(qx, qw, bits, AnalogADC(bits=b, rows=rows, full_scale=None))
            for b in range(3, 11)]
    assert non_increasing(unit), unit
    dithered = [mac_error(qx, qw, bits, AnalogADC(bits=b, rows=rows, noise_lsb=0.5, seed=seed))
                for b in range(3, 11)]
    assert non_increasing(dithered), dithered
    noisy = [mac_error(qx, qw, bits, AnalogADC(bits=8, rows=rows, noise_lsb=s, seed=seed))
             for s in (0.5, 1.0, 2.0)]
    assert non_increasing(noisy[::-1]), noisy
    # from no noise up, at one code per row on 64 rows: exact without noise, nothing clips. (On
    # taller tiles the clipped sums' undershoot can be partly cancelled by the noise's own bias,
    # codes below 0 being read as 0: more noise, less error; see the clipping test below.)
    from_zero = [mac_error(qx, qw, bits, AnalogADC(bits=8, rows=64, full_scale=None,
                                                   noise_lsb=s, seed=seed))
                 for s in (0.0, 0.25, 0.5, 1.0, 2.0)]  # fmt: skip
    assert from_zero[0] == 0 and non_increasing(from_zero[::-1]), from_zero


def test_without_noise_a_coarse_lsb_rounds_coherently() -> None:
    """Why SQNR is not monotone in b without noise at full scale = rows: with an LSB above the
    spread of the column sums, rounding errs the same way for most conversions. Sparse weights
    on 768 rows (sums ~42 and ~17 in two tiles): 5 bits (LSB 24.8) round both up, 4 bits (LSB
    51.2) one up and one down, and 4 bits come out ahead. Half an LSB of noise restores order."""
    qx, qw = operands(np.random.default_rng(0), 48, 24, 1083, 1, 1, 0.5, 0.109375)
    assert mac_error(qx, qw, 1, AnalogADC(bits=4)) < mac_error(qx, qw, 1, AnalogADC(bits=5))
    assert mac_error(qx, qw, 1, AnalogADC(bits=4, noise_lsb=0.5)) > mac_error(
        qx, qw, 1, AnalogADC(bits=5, noise_lsb=0.5))


def test_with_clipping_noise_can_cancel_part_of_the_undershoot() -> None:
    """Why SQNR is not monotone in noise when sums clip: at one code per row on a 768-row tile
    dense 1-b planes sum above 255 and clip (every error an undershoot), while noise on the
    zero sums is read as codes >= 0 only, a positive bias that cancels part of it."""
    qx, qw = operands(np.random.default_rng(0), 48, 24, 769, 1, 1, 0.5, 0.75)
    err = [mac_error(qx, qw, 1, AnalogADC(bits=8, full_scale=None, noise_lsb=s))
           for s in (0.0, 2.0)]  # fmt: skip
    assert err[1] < err[0]
    row64 = [mac_error(qx, qw, 1, AnalogADC(bits=8, rows=64, full_scale=None, noise_lsb=s))
             for s in (0.0, 2.0)]  # fmt: skip
    assert row64[0] == 0 < row64[1]  # nothing clips on 64 rows: noise only adds error


def test_a_lsb_just_above_one_row_is_a_gain_error() -> None:
    """Why SQNR is not monotone in b for every height without noise: on 64 rows a 6-bit ADC has
    LSB = 64/63 rows, and every column sum below 32 converts to code = s, read back as s x 64/63:
    a coherent 1.6% gain error, worse than 5 bits' incoherent rounding (LSB 64/31)."""
    s = np.arange(32)
    adc6 = AnalogADC(bits=6, rows=64)
    assert np.array_equal(adc6.codes(s), s)
    qx, qw = operands(np.random.default_rng(0), 48, 24, 60, 3, 3)  # one tile, sums ~15
    assert mac_error(qx, qw, 3, adc6) > 1.05 * mac_error(qx, qw, 3, AnalogADC(bits=5, rows=64))


# --- the front end, the arch and the scheduler ------------------------------------------------

def test_apply_refuses_pac_settings_and_overflow() -> None:
    rng = np.random.default_rng(0)
    qx, qw = operands(rng, 3, 2, 20, 8, 8)
    act, pw = linear_operands(qx, qw, 8, 8)
    with pytest.raises(ValueError, match="every bit pair"):
        apply(act, pw, operand=4, analog=AnalogADC())
    with pytest.raises(ValueError, match="rows must be"):
        AnalogADC(rows=0)
    with pytest.raises(ValueError, match="full_scale"):
        AnalogADC(full_scale=-1.0)
    big = linear_operands(*operands(rng, 2, 2, 40, 16, 16), 16, 16)
    with pytest.raises(ValueError, match="overflow"):
        am.compute(*big, AnalogADC(bits=16, rows=1))


def test_arch_section_is_validated_and_optional() -> None:
    jia = load_arch("jia_bpbs_65nm")
    assert jia.analog is not None and jia.analog.adc_bits is None
    adc = AnalogADC.from_arch(jia)
    assert (adc.bits, adc.rows, adc.full_scale) == (8, 768, 1.0)
    assert AnalogADC.from_arch(load_arch("jia_bpbs_65nm", {"analog": None})) is None
    assert AnalogADC.from_arch(load_arch("jia_bpbs_65nm", {"analog.adc_bits": 5})).bits == 5
    with pytest.raises(ConfigError, match="bp_bs"):
        load_arch("pacim_65nm", {"analog.noise_lsb": 1.0})
    with pytest.raises(ConfigError, match="analog.gain"):
        load_arch("jia_bpbs_65nm", {"analog.gain": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        load_arch("jia_bpbs_65nm", {"analog.bits": 8})


@pytest.mark.parametrize("bits, rows", [((1, 1), 768), ((4, 4), 768), ((3, 5), 100)])
def test_conversions_equal_what_the_scheduler_charges(bits: tuple[int, int], rows: int) -> None:
    from pacim.pipeline import run_layer
    from pacim.sched import schedule
    from pacim.workloads import load_workload

    xbit, wbit = bits
    arch = load_arch("jia_bpbs_65nm", {"macro.xbit": xbit, "macro.wbit": wbit,
                                       "macro.rows": rows})
    wl = load_workload("workloads/tiny_cnn.yaml")
    mapped = [la for la in wl.layers if la.mapped]
    stats = {la.name: run_layer(arch, la, True, index=i)[0] for i, la in enumerate(mapped)}
    counts = {c.name: c for c in schedule(arch, wl, stats)}
    for la in mapped:
        assert stats[la.name].adc_conversions == counts[la.name].bpbs_conversions > 0
    assert counts["fc"].row_tiles == stats["fc"].analog.tiles == math.ceil(4096 / rows)


def test_simulate_reports_sqnr_per_layer_and_null_is_exact() -> None:
    from pacim.pipeline import simulate

    rep = simulate("jia_bpbs_65nm", "workloads/tiny_cnn.yaml").to_dict()
    layers = [la for la in rep["layers"] if la.get("accuracy")]
    assert layers and all(math.isfinite(la["accuracy"]["sqnr_db"]) for la in layers)
    assert all(la["analog"]["adc_conversions"] > 0 and not la["exact"] for la in layers)
    exact = simulate(load_arch("jia_bpbs_65nm", {"analog": None}), "workloads/tiny_cnn.yaml")
    d = exact.to_dict()
    assert d["accuracy"]["sqnr_db"] is None or math.isinf(d["accuracy"]["sqnr_db"])
    assert all("analog" not in la for la in d["layers"])
    assert d["energy_pj"] == rep["energy_pj"]  # the same conversions, the same energy


def test_the_issue_sweep_grid_runs_from_the_shipped_arch() -> None:
    from pacim.sweeps import SerialExecutor, sweep

    recs = sweep(load_arch("jia_bpbs_65nm"), {"analog.adc_bits": [4, 8],
                                              "analog.noise_lsb": [0.0, 2.0]},
                 "workloads/tiny_cnn.yaml", executor=SerialExecutor())
    assert [r["status"] for r in recs] == ["ok"] * 4
    sq = {(r["analog.adc_bits"], r["analog.noise_lsb"]): r["sqnr_db"] for r in recs}
    assert sq[(8, 0.0)] > sq[(4, 0.0)] and sq[(8, 0.0)] > sq[(8, 2.0)]
    assert len({r["energy_pj"] for r in recs}) == 1  # the ADC's energy is not rescaled
