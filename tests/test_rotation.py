"""Block-Hadamard input rotation (pacim.llm.rotation)."""

from __future__ import annotations

import numpy as np
import pytest

from pacim.errors import PacimError
from pacim.llm.insertquant import static_qparams
from pacim.llm.rotation import BlockHadamard, block_size, hadamard
from pacim.quant import quantize, quantize_with


@pytest.mark.parametrize("n", [1, 2, 8, 64, 512])
def test_hadamard_orthogonal_symmetric(n: int) -> None:
    h = hadamard(n).astype(np.float64)
    assert np.allclose(h @ h.T, np.eye(n), atol=1e-6)
    assert np.array_equal(h, h.T)
    assert np.allclose(np.abs(h), 1 / np.sqrt(n))


def test_hadamard_rejects_non_power_of_two() -> None:
    with pytest.raises(PacimError, match="power of two"):
        hadamard(12)


@pytest.mark.parametrize("dim, block", [(576, 64), (1536, 512), (2048, 2048), (7, 1), (96, 32)])
def test_block_size(dim: int, block: int) -> None:
    assert block_size(dim) == block
    assert BlockHadamard.for_dim(dim).block == block


def test_apply_equals_dense_matrix_and_preserves_products() -> None:
    rng = np.random.default_rng(0)
    r = BlockHadamard(96, 32)
    x = rng.standard_normal((5, 96)).astype(np.float32)
    w = rng.standard_normal((7, 96)).astype(np.float32)
    assert np.allclose(r.apply(x), x @ r.matrix(), atol=1e-5)
    # the rotated product is the product: (x R)(W R)^T = x W^T
    assert np.allclose(r.apply(x) @ r.apply(w).T, x @ w.T, atol=1e-4)
    assert r.apply(x[None]).shape == (1, 5, 96)
    assert r.adds_per_row == 96 * 5
    assert BlockHadamard.for_dim(7).identity
    with pytest.raises(PacimError, match="applied to shape"):
        r.apply(x[:, :95])
    with pytest.raises(PacimError, match="does not divide"):
        BlockHadamard(96, 64)


def test_rotation_spreads_a_channel_outlier() -> None:
    """A per-tensor 8-bit quantizer loses far less on x R when one channel holds outliers."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 512)).astype(np.float32)
    x[::16, 90] = 80.0  # a few tokens with a large value in one channel
    w = rng.standard_normal((64, 512)).astype(np.float32) * 0.05
    r = BlockHadamard.for_dim(512)
    y = x @ w.T

    def err(xx: np.ndarray, ww: np.ndarray) -> float:
        sc, bi = static_qparams(float(xx.min()), float(xx.max()), 8)
        xq = quantize_with(xx, 8, sc, bi).dequantize()
        wq = quantize(ww, 8).dequantize()
        return float(np.square(xq @ wq.T - y).sum() / np.square(y).sum())

    plain, rotated = err(x, w), err(r.apply(x), r.apply(w))
    assert rotated < plain / 5
