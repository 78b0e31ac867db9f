"""The macro and functional layers against the slow bit-serial reference and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacim.functional import conv2d, linear, linear_quantized
from pacim.macro import (
    bit_planes,
    digital_set,
    dynamic_mac,
    exact_mac,
    macro_mac,
    pac_mac,
    plane_counts,
)
from pacim.quant import fake_quantize, quantize, quantize_with
from tests.reference import ref_conv2d, ref_linear, ref_quantize

THR = (7000.0, 10000.0, 13000.0)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _cols(x, w, xbit, stride, padding):
    """Unfolded padded codes, independent of pacim's kernels."""
    qx, sx, bx = ref_quantize(x, xbit)
    z = int(np.round(np.clip(abs(bx) / sx, 0, 1) * (2**xbit - 1)))
    xp = np.pad(qx, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2), constant_values=z)
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]  # (B, C, Ho, Wo, kh, kw)
    b, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kh * kw).astype(np.uint16)


CONV_CASES = [
    # (xbit, wbit, operand, stride, padding, batch)
    (8, 8, 4, 1, 1, 1),
    (8, 8, 4, 2, 0, 2),
    (8, 8, 2, 1, 2, 1),
    (8, 8, 6, 2, 1, 2),
    (2, 2, 1, 1, 1, 2),
    (3, 5, 2, 1, 0, 1),
    (4, 4, 3, 2, 2, 1),
    (5, 3, 4, 1, 1, 1),
    (6, 7, 5, 1, 1, 1),
    (7, 6, 7, 3, 1, 2),
    (8, 4, 8, 1, 1, 1),
]


@pytest.mark.parametrize("xbit,wbit,operand,stride,padding,batch", CONV_CASES)
@pytest.mark.parametrize("approx", ["pac", "truncate", "expected"])
def test_conv2d_matches_bit_serial_reference(xbit, wbit, operand, stride, padding, batch, approx):
    rng = np.random.default_rng(xbit * 100 + wbit * 10 + operand)
    x = rng.standard_normal((batch, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4)
    y, st = conv2d(x, w, bias, stride=stride, padding=padding, xbit=xbit, wbit=wbit,
                   operand=operand, approx=approx, return_stats=True)
    yr, ex, ap, cyc = ref_conv2d(x, w, bias, stride=stride, padding=padding, xbit=xbit,
                                 wbit=wbit, operand=operand, approx=approx)
    assert y.shape == yr.shape and y.dtype == np.float64
    assert _rel(y, yr) < 1e-9
    # integer domain: the digital pairs are exact to the integer, the rest within 1e-9
    cols = _cols(x, w, xbit, stride, padding)
    qw = ref_quantize(w, wbit)[0].reshape(4, -1)
    exact_part = macro_mac(cols, qw, xbit=xbit, wbit=wbit, operand=operand, approx="truncate")
    ex_flat = ex.transpose(0, 2, 3, 1).reshape(-1, 4)
    assert np.array_equal(exact_part.mac, ex_flat.astype(np.float64))
    full = macro_mac(cols, qw, xbit=xbit, wbit=wbit, operand=operand, approx=approx).mac
    ap_flat = ap.transpose(0, 2, 3, 1).reshape(-1, 4)
    assert np.abs(full - ex_flat - ap_flat).max() <= 1e-9 * max(1.0, np.abs(full).max())
    assert st.digital_cycles_mean == len(digital_set(xbit, wbit, operand).nonzero()[0])
    assert st.macs == y.size * 27


@pytest.mark.parametrize("stride,padding,batch", [(1, 1, 1), (2, 1, 2), (1, 0, 3)])
def test_dynamic_matches_reference_at_every_level(stride, padding, batch):
    rng = np.random.default_rng(7 + stride + padding)
    x = np.abs(rng.standard_normal((batch, 4, 7, 7))) * rng.uniform(0.1, 1, (batch, 4, 7, 7))
    w = rng.standard_normal((5, 4, 3, 3))
    cols = _cols(x, w, 8, stride, padding)
    e = cols.sum(axis=1) * 576 / cols.shape[1]
    thr = tuple(float(v) for v in np.quantile(e, [0.25, 0.5, 0.75]))
    y, st = conv2d(x, w, stride=stride, padding=padding, dynamic=thr, return_stats=True)
    yr, ex, ap, cyc = ref_conv2d(x, w, stride=stride, padding=padding, dynamic=thr)
    assert _rel(y, yr) < 1e-9
    assert set(np.unique(cyc)) == {10, 13, 15, 16}  # every level exercised
    assert st.cycle_hist == {c: int((cyc == c).sum()) * 5 for c in (10, 13, 15, 16)}
    assert st.digital_cycles_mean == pytest.approx(cyc.mean())
    qw = ref_quantize(w, 8)[0].reshape(5, -1)
    mac, cycles = dynamic_mac(cols, qw, thresholds=thr)
    assert np.array_equal(cycles, cyc.reshape(-1))
    mac_t = macro_mac(cols, qw, xbit=8, wbit=8, operand=4, approx="truncate", dynamic=thr).mac
    assert np.array_equal(mac_t, ex.transpose(0, 2, 3, 1).reshape(-1, 5).astype(float))


def test_dynamic_default_thresholds_and_low_activity_rows():
    rng = np.random.default_rng(3)
    x = np.abs(rng.standard_normal((1, 8, 6, 6))) ** 3  # skewed: many small windows
    w = rng.standard_normal((3, 8, 3, 3))
    y, st = conv2d(x, w, padding=1, dynamic=THR, return_stats=True)
    yr, _, _, cyc = ref_conv2d(x, w, padding=1, dynamic=THR)
    assert _rel(y, yr) < 1e-9
    assert st.digital_cycles_mean < 16


@pytest.mark.parametrize("xbit,wbit,operand", [(8, 8, 4), (2, 2, 1), (4, 6, 3), (8, 8, 8),
                                               (5, 5, 2), (7, 3, 7)])
@pytest.mark.parametrize("approx", ["pac", "truncate", "expected"])
def test_linear_matches_reference(xbit, wbit, operand, approx):
    rng = np.random.default_rng(11 + xbit + wbit)
    x = rng.standard_normal((3, 19))
    w = rng.standard_normal((6, 19))
    bias = rng.standard_normal(6)
    y = linear(x, w, bias, xbit=xbit, wbit=wbit, operand=operand, approx=approx)
    yr, _, _ = ref_linear(x, w, bias, xbit=xbit, wbit=wbit, operand=operand, approx=approx)
    assert _rel(y, yr) < 1e-9


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_full_operand_equals_float_conv_of_fake_quantized(bits):
    rng = np.random.default_rng(bits)
    x = rng.standard_normal((2, 5, 9, 9)) + 0.3
    w = rng.standard_normal((7, 5, 3, 3))
    y = conv2d(x, w, stride=2, padding=1, xbit=bits, wbit=bits, operand=bits)
    qx = quantize(x, bits)
    xt = qx.dequantize()
    zval = qx.pad_code * qx.step + qx.bias  # padded elements are t~ at q = z
    xp = np.pad(xt, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=zval)
    wt = fake_quantize(w, bits)
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    ref = np.einsum("bchwij,kcij->bkhw", win, wt)
    assert _rel(y, ref) < 1e-9


def test_full_operand_linear_equals_float_and_static_scales():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64))
    w = rng.standard_normal((10, 64))
    y = linear(x, w, operand=8)
    assert _rel(y, fake_quantize(x, 8) @ fake_quantize(w, 8).T) < 1e-9
    # static calibrated scale: out-of-range activations clip
    qx = quantize_with(x, 8, scale=2.0, bias=-1.0)
    qw = quantize(w, 8)
    y2 = linear_quantized(qx, qw, operand=8)
    assert _rel(y2, qx.dequantize() @ qw.dequantize().T) < 1e-9


def test_pac_error_is_hypergeometric():
    """PAC's term for random bit vectors of fixed density: mean 0, hypergeometric variance."""
    n, k1, k2, trials = 1024, 307, 154, 4000  # densities 0.30 / 0.15
    rng = np.random.default_rng(0)
    qw = np.zeros((1, n), dtype=np.uint8)
    qw[0, :k1] = 1
    qx = np.zeros((trials, n), dtype=np.uint8)
    qx[:, :k2] = 1
    qx = rng.permuted(qx, axis=1)
    # 2-bit codes with only plane 0 populated: at operand 1 the (0,0) pair is PAC-approximated
    err = pac_mac(qx, qw, xbit=2, wbit=2, operand=1)[:, 0] - exact_mac(qx, qw, xbit=2, wbit=2)[:, 0]
    var = k1 * k2 * (n - k1) * (n - k2) / (n**2 * (n - 1))
    assert np.sqrt(var) == pytest.approx(5.2, abs=0.1)
    assert abs(err.mean()) < 4 * np.sqrt(var / trials)
    assert err.std() == pytest.approx(np.sqrt(var), rel=0.06)


def test_pac_beats_baselines_on_relu_like_data():
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((1, 16, 12, 12)), 0)
    w = rng.standard_normal((8, 16, 3, 3)) * 0.1
    exact = conv2d(x, w, padding=1, operand=8)
    err = {a: np.sqrt(((conv2d(x, w, padding=1, approx=a) - exact) ** 2).mean())
           for a in ("pac", "truncate", "expected")}
    assert 0 < err["pac"] < err["truncate"]
    assert err["pac"] < err["expected"]


def test_bit_planes_and_counts():
    q = np.array([[0, 1, 2, 3], [255, 128, 7, 8]], dtype=np.uint8)
    p = bit_planes(q, 8)
    assert p.shape == (8, 2, 4)
    assert np.array_equal((p * (1 << np.arange(8))[:, None, None]).sum(0), q)
    c = plane_counts(q, 8)
    assert c.shape == (2, 8)
    assert np.array_equal(c, p.sum(axis=2).T)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_quantize_range_and_error(bits, seed):
    t = np.random.default_rng(seed).standard_normal(37) * 3
    q = quantize(t, bits)
    assert q.q.min() == 0 and int(q.q.max()) == (1 << bits) - 1
    assert np.abs(q.dequantize() - t).max() <= q.step / 2 + 1e-9


def test_exact_mac_and_counts_entry_points():
    rng = np.random.default_rng(2)
    qx = rng.integers(0, 256, (5, 300)).astype(np.uint8)
    qw = rng.integers(0, 256, (3, 300)).astype(np.uint8)
    assert np.array_equal(exact_mac(qx, qw), qx.astype(np.int64) @ qw.T.astype(np.int64))


BAD = [
    (dict(x=np.zeros((1, 3, 4))), "x must be 4-D"),
    (dict(w=np.zeros((2, 4, 3, 3))), "input channels"),
    (dict(xbit=0), "xbit"),
    (dict(wbit=17), "wbit"),
    (dict(operand=9), "operand"),
    (dict(operand=0), "operand"),
    (dict(x=np.full((1, 3, 5, 5), np.nan)), "NaN"),
    (dict(w=np.full((2, 3, 3, 3), np.inf)), "NaN or inf"),
    (dict(x=np.zeros((0, 3, 5, 5))), "empty"),
    (dict(dynamic=(1, 2)), "dynamic"),
    (dict(dynamic=(3, 2, 1)), "ascending"),
    (dict(dynamic=THR, operand=5), "dynamic configuration"),
    (dict(dynamic=THR, xbit=6), "dynamic configuration"),
    (dict(approx="magic"), "approx"),
    (dict(stride=0), "stride"),
    (dict(padding=-1), "padding"),
    (dict(bias=np.zeros(3)), "bias"),
    (dict(w=np.zeros((2, 3, 9, 9))), "does not fit"),
]


@pytest.mark.parametrize("override,msg", BAD)
def test_conv2d_rejects_bad_input(override, msg):
    args = dict(x=np.random.default_rng(0).standard_normal((1, 3, 5, 5)),
                w=np.ones((2, 3, 3, 3)), bias=None, stride=1, padding=1)
    args.update(override)
    x, w, bias = args.pop("x"), args.pop("w"), args.pop("bias")
    with pytest.raises(ValueError, match=msg):
        conv2d(x, w, bias, **args)


def test_linear_rejects_bad_input():
    with pytest.raises(ValueError, match="features"):
        linear(np.ones((2, 5)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="x must be 2-D"):
        linear(np.ones(5), np.ones((3, 5)))
    with pytest.raises(ValueError, match="qx"):
        pac_mac(np.full((2, 3), 300, dtype=np.uint16), np.ones((2, 3), dtype=np.uint8))


def test_pac_products_per_output():
    """The PAC engine's count products per output equal the rank of the factored PAC sum."""
    from pacim.macro.core import pac_products, pac_products_by_cycles

    assert pac_products_by_cycles(8, 8, 4) == {16: 2, 15: 3, 13: 4, 10: 5}
    assert pac_products(digital_set(8, 8, 8)) == 0  # exact: nothing approximated
    assert pac_products(digital_set(8, 8, 1)) == 2
    # the factored sum with that many products reproduces the pair-by-pair PAC term
    rng = np.random.default_rng(4)
    sx, sw, n = rng.integers(0, 100, 8), rng.integers(0, 100, 8), 100
    d = digital_set(8, 8, 4)
    nd = ~d
    pairwise = sum(2.0 ** (i + j) * sw[i] * sx[j] / n
                   for i in range(8) for j in range(8) if nd[i, j])
    groups = {}
    for i in range(8):
        if nd[i].any():
            groups.setdefault(tuple(nd[i]), []).append(i)
    factored = sum(sum(2.0**i * sw[i] for i in g) * sum(2.0**j * sx[j] for j in range(8) if p[j])
                   for p, g in groups.items()) / n
    assert len(groups) == 2 and factored == pytest.approx(pairwise)


def test_integer_entry_points_reject_out_of_range_codes():
    """Wide or signed code arrays are range-checked before any narrowing (no silent wrap)."""
    ones = np.ones((1, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="codes >= 2"):
        exact_mac(np.array([[300, 1, 2]]), ones)  # int64, as numpy builds it
    with pytest.raises(ValueError, match="codes >= 2"):
        pac_mac(np.array([[256, 1, 2]], dtype=np.uint32), ones)
    with pytest.raises(ValueError, match="negative"):
        exact_mac(np.array([[-1, 1, 2]]), ones)
    with pytest.raises(ValueError, match="codes must be in"):
        bit_planes(np.array([256]), 8)
    with pytest.raises(ValueError, match="codes must be in"):
        plane_counts(np.array([[-3, 1]]), 8)
    with pytest.raises(ValueError, match="x_counts must have shape"):
        macro_mac(ones, ones, xbit=8, wbit=8, operand=4, x_counts=np.zeros((2, 8)))


def test_quantize_with_rejects_bad_scale_and_values():
    with pytest.raises(ValueError, match="scale"):
        quantize_with(np.ones(3), 8, scale=0.0, bias=0.0)
    with pytest.raises(ValueError, match="scale"):
        quantize_with(np.ones(3), 8, scale=float("nan"), bias=0.0)
    with pytest.raises(ValueError, match="NaN"):
        quantize_with(np.array([1.0, np.nan]), 8, scale=1.0, bias=0.0)
