"""The fast macro (unfold + GEMM, popcount for moved pairs, grouped PAC products) against the
literal bit-serial reference on odd shapes, and the prepared-operand front end."""

from __future__ import annotations

import numpy as np
import pytest

from pacim.functional import conv2d, linear
from pacim.macro import (
    activations_from_codes,
    apply,
    dynamic_mac,
    macro_mac,
    prepare_weight,
    quantize_activations,
)
from pacim.macro.core import pac_products, plane_groups
from pacim.quant import quantize
from tests.reference import ref_conv2d, ref_linear, ref_quantize


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _thresholds(x: np.ndarray, w_shape: tuple, stride: int, padding: int) -> tuple:
    """Thresholds at the quartiles of the windows' E, so that every level is exercised."""
    q, s, b = ref_quantize(x, 8)
    z = int(np.round(np.clip(abs(b) / s, 0, 1) * 255))
    kh, kw = w_shape[2:]
    xp = np.pad(q, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2), constant_values=z)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    e = win[:, :, ::stride, ::stride].sum(axis=(1, 4, 5)).ravel() * 576 / (x.shape[1] * kh * kw)
    u = np.unique(e)  # distinct values: each level (E <= t0, t0 < E <= t1, ...) gets rows
    assert u.size >= 4
    idx = [(i * u.size) // 4 for i in (1, 2, 3)]  # midway between two values: no ties
    return tuple(float(u[i - 1] + u[i]) / 2 for i in idx)


# C = 65 and 130: the bit-packed planes need 2 and 3 64-bit words per pixel (a partial word)
DYN_CASES = [  # (C, kernel, stride, padding, batch, H, W)
    (65, (3, 3), 1, 1, 2, 4, 4),
    (65, (1, 1), 1, 0, 1, 5, 3),
    (130, (2, 3), 2, 2, 1, 4, 5),
    (5, (3, 3), 3, 2, 2, 7, 6),
]


@pytest.mark.parametrize("c,kernel,stride,padding,batch,h,w", DYN_CASES)
def test_dynamic_popcount_matches_reference_on_odd_shapes(c, kernel, stride, padding, batch, h,
                                                          w):
    rng = np.random.default_rng(c + stride)
    x = np.abs(rng.standard_normal((batch, c, h, w))) * rng.uniform(0.05, 1, (batch, c, h, w))
    wt = rng.standard_normal((3, c) + kernel)
    thr = _thresholds(x, wt.shape, stride, padding)
    y, st = conv2d(x, wt, stride=stride, padding=padding, dynamic=thr, return_stats=True)
    yr, ex, ap, cyc = ref_conv2d(x, wt, stride=stride, padding=padding, dynamic=thr)
    assert _rel(y, yr) < 1e-9
    assert set(np.unique(cyc)) == {10, 13, 15, 16}  # every dynamic level exercised
    assert st.cycle_hist == {cc: int((cyc == cc).sum()) * 3 for cc in (10, 13, 15, 16)}
    # integer domain: the digital pairs of every row's level, exact to the integer
    act = quantize_activations(x, 8, kernel=kernel, stride=stride, pads=(padding,) * 4)
    pw = prepare_weight(wt, 8)
    from pacim.macro.engine import compute

    parts = compute(act, pw, operand=4, approx="truncate", dynamic=thr)
    exact_part = parts.digital.astype(np.float64) * parts.unit
    assert np.array_equal(exact_part, ex.transpose(0, 2, 3, 1).reshape(-1, 3).astype(float))


@pytest.mark.parametrize("xbit,wbit,operand", [(2, 2, 1), (3, 7, 2), (5, 4, 4), (8, 8, 3)])
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (3, 2)])
def test_static_conv_odd_channels_all_bits(xbit, wbit, operand, stride, padding):
    rng = np.random.default_rng(xbit * 7 + wbit + stride)
    x = rng.standard_normal((2, 67, 5, 4))
    wt = rng.standard_normal((2, 67, 2, 3))
    y = conv2d(x, wt, stride=stride, padding=padding, xbit=xbit, wbit=wbit, operand=operand)
    yr = ref_conv2d(x, wt, stride=stride, padding=padding, xbit=xbit, wbit=wbit,
                    operand=operand)[0]
    assert _rel(y, yr) < 1e-9


def test_integer_dynamic_mac_matches_reference_rows():
    """Code matrices (a 1x1 layer of P rows) through the popcount path, N = 129."""
    rng = np.random.default_rng(9)
    x = np.abs(rng.standard_normal((40, 129))) ** 2
    w = rng.standard_normal((4, 129))
    qx = ref_quantize(x, 8)[0].astype(np.uint8)
    qw = ref_quantize(w, 8)[0].astype(np.uint8)
    e = qx.sum(axis=1) * 576 / 129
    thr = tuple(float(v) for v in np.quantile(e, [0.25, 0.5, 0.75]))
    mac, cycles = dynamic_mac(qx, qw, thresholds=thr)
    from tests.reference import dyn_moved_upto, ref_digital_set, ref_mac

    for p in range(40):
        dset = ref_digital_set(8, 8, 4, dyn_moved_upto(e[p], thr))
        assert cycles[p] == len(dset)
        for k in range(4):
            ex, ap = ref_mac(qx[p], qw[k], 8, 8, dset)
            assert abs(mac[p, k] - (ex + ap)) <= 1e-9 * max(1.0, abs(ex))
    assert set(np.unique(cycles)) == {10, 13, 15, 16}


def test_grouped_pac_products_equal_the_pairwise_sum():
    """The factored PAC term (one count product per weight-plane group) equals pair by pair."""
    from pacim.macro.core import approx_factors, digital_set, dynamic_digital_sets

    rng = np.random.default_rng(3)
    sx = rng.integers(0, 50, (6, 8))
    sw = rng.integers(0, 50, (5, 8))
    sets = dynamic_digital_sets(8, 8, 4)
    groups = plane_groups(*(~s for s in sets))
    assert len(groups) == 5  # planes 0-3 share one pattern at every level; 4, 5, 6, 7 differ
    for d in sets:
        nd = ~d
        left, right = approx_factors("pac", nd, sx, sw, 50, 8, 8, groups)
        pairwise = np.array([[sum(2.0 ** (i + j) * sw[k, i] * sx[p, j] / 50
                                  for i in range(8) for j in range(8) if nd[i, j])
                              for k in range(5)] for p in range(6)])
        assert np.allclose(left @ right, pairwise, rtol=1e-12)
    static = ~digital_set(8, 8, 4)
    assert len(plane_groups(static)) == pac_products(digital_set(8, 8, 4)) == 2


def test_prepared_weight_gives_identical_results_and_is_immutable():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((2, 8, 6, 6)), 0)
    w = rng.standard_normal((4, 8, 3, 3))
    b = rng.standard_normal(4)
    pw = prepare_weight(w, 8)
    for kw in ({}, {"dynamic": (300.0, 600.0, 900.0)}, {"operand": 8}, {"approx": "expected"}):
        assert np.array_equal(conv2d(x, pw, b, padding=1, **kw), conv2d(x, w, b, padding=1, **kw))
    xl = rng.standard_normal((5, 20))
    wl = rng.standard_normal((3, 20))
    assert np.array_equal(linear(xl, prepare_weight(wl, 6), wbit=6),
                          linear(xl, wl, wbit=6))
    # a snapshot: the float weight may change afterwards, the prepared one cannot
    y0 = conv2d(x, pw, padding=1)
    w[:] = 0.0
    assert np.array_equal(conv2d(x, pw, padding=1), y0)
    for arr in (pw.codes, pw.counts, pw.sum_wt, pw.msb(4, np.float32), pw.packed((4, 5))):
        with pytest.raises(ValueError, match="read-only"):
            arr[(0,) * arr.ndim] = 1
    with pytest.raises(AttributeError):
        pw.scale = 2.0  # frozen
    with pytest.raises(ValueError, match="prepared conv weight"):
        linear(xl, pw)


def test_activation_policies_and_codes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 5)) * np.array([1, 5, 20])[:, None, None, None]
    per_tensor = quantize_activations(x, 8, kernel=(3, 3), pads=(1, 1, 1, 1))
    per_sample = quantize_activations(x, 8, kernel=(3, 3), pads=(1, 1, 1, 1), per="sample")
    assert np.all(per_tensor.scale == per_tensor.scale[0])
    for i in range(3):  # per sample = each image quantized on its own
        q = quantize(x[i], 8)
        assert per_sample.scale[i] == q.scale and per_sample.bias[i] == q.bias
        inner = per_sample.codes[i, 1:-1, 1:-1].transpose(2, 0, 1)
        assert np.array_equal(inner, q.q)
        assert np.all(per_sample.codes[i, 0] == q.pad_code)
    qt = quantize(x, 8)
    from_codes = activations_from_codes(qt, kernel=(3, 3), pads=(1, 1, 1, 1))
    assert np.array_equal(from_codes.codes, per_tensor.codes)
    pw = prepare_weight(rng.standard_normal((2, 4, 3, 3)))
    assert np.array_equal(apply(from_codes, pw, layout="nchw")[0],
                          apply(per_tensor, pw, layout="nchw")[0])
    with pytest.raises(ValueError, match="NaN"):
        quantize_activations(np.full((1, 3), np.nan), 8)
    with pytest.raises(ValueError, match="per must be"):
        quantize_activations(x, 8, per="row")
    with pytest.raises(ValueError, match="N=4"):
        apply(quantize_activations(x[:, 0, 0, :4].copy(), 8), prepare_weight(np.ones((2, 5))))


def test_linear_against_reference_with_many_words():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 200))
    w = rng.standard_normal((5, 200))
    for op in (2, 4, 8):
        y = linear(x, w, operand=op)
        assert _rel(y, ref_linear(x, w, operand=op)[0]) < 1e-9
    # supplied plane counts are validated, then used
    qx = ref_quantize(x, 8)[0].astype(np.uint8)
    qw = ref_quantize(w, 8)[0].astype(np.uint8)
    r = macro_mac(qx, qw, xbit=8, wbit=8, operand=4)
    r2 = macro_mac(qx, qw, xbit=8, wbit=8, operand=4, x_counts=r.x_counts, w_counts=r.w_counts)
    assert np.array_equal(r.mac, r2.mac)


@pytest.mark.parametrize("n,xbit,wbit", [(5000, 8, 8), (300, 8, 8), (100, 16, 16), (64, 12, 5)])
def test_exact_gemm_plans_are_exact(n, xbit, wbit):
    """float32 in weight digits over N chunks (8b x 8b, N above 4386), float64 for 16 bits."""
    from pacim.macro.engine import gemm_plan

    rng = np.random.default_rng(n)
    qx = rng.integers(0, 1 << xbit, (7, n)).astype(np.uint16 if xbit > 8 else np.uint8)
    qw = rng.integers(0, 1 << wbit, (3, n)).astype(np.uint16 if wbit > 8 else np.uint8)
    qx[0] = (1 << xbit) - 1  # the largest possible dot product
    qw[0] = (1 << wbit) - 1
    ref = qx.astype(np.int64) @ qw.T.astype(np.int64)
    from pacim.macro import exact_mac

    assert np.array_equal(exact_mac(qx, qw, xbit=xbit, wbit=wbit), ref)
    dt, digit, chunk = gemm_plan(xbit, wbit, n)
    assert (dt, digit is None) == ((np.float64, True) if xbit == 16 else (np.float32, n < 300))
    if n == 5000:
        assert chunk < n  # several chunks
