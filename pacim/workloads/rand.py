"""Fast deterministic normal samples for synthetic weights.

numpy's Gaussian generator costs ~25-40 ns a sample on the 2-core target machine, so the 200 M
weights of a Llama-2-7B-sized block would take seconds. Here a sample is a pure function of
(key, index): a splitmix64 hash of the index gives four 16-bit uniforms, each mapped through a
65536-entry inverse-normal table (the two extreme bins are resolved exactly in the tail, so large
tensors keep their true maxima). Chunks run on Python threads over a nogil numba kernel: the
result does not depend on the chunking or the thread count.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

_CHUNK = 1 << 22  # elements per thread task (a multiple of 4)
_TABLE_BITS = 16


@njit(cache=True, inline="always")
def _mix(z):  # pragma: no cover - compiled
    """splitmix64 finalizer."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _lower_tail(p):  # pragma: no cover - compiled
    """Inverse normal CDF for p < 0.02425 (Acklam, relative error < 1.2e-9)."""
    q = np.sqrt(-2.0 * np.log(p))
    num = ((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e00)
            * q - 2.549732539343734e00) * q + 4.374664141464968e00) * q + 2.938163982698783e00
    den = (((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e00)
           * q + 3.754408661907416e00) * q + 1.0
    return num / den


@njit(cache=True)
def _ppf(p):  # pragma: no cover - compiled
    """Inverse normal CDF (Acklam's rational approximation, relative error < 1.2e-9)."""
    if p < 0.02425:
        return _lower_tail(p)
    if p > 0.97575:
        return -_lower_tail(1.0 - p)
    q = p - 0.5
    r = q * q
    num = (((((-3.969683028665376e01 * r + 2.209460984245205e02) * r - 2.759285104469687e02)
             * r + 1.383577518672690e02) * r - 3.066479806614716e01) * r
           + 2.506628277459239e00) * q
    den = ((((-5.447609879822406e01 * r + 1.615858368580409e02) * r - 1.556989798598866e02)
            * r + 6.680131188771972e01) * r - 1.328068155288572e01) * r + 1.0
    return num / den


@njit(cache=True)
def _table(bits):  # pragma: no cover - compiled
    """Inverse-normal value at the centre of each of 2**bits equal-probability bins."""
    m = 1 << bits
    t = np.empty(m, np.float64)
    for i in range(m):
        t[i] = _ppf((i + 0.5) / m)
    return t


@njit(cache=True, nogil=True)
def _fill(out, start, key, scale, tab):  # pragma: no cover - compiled
    """out[i] = scale * N(0,1) sample number start + i of stream `key` (start % 4 == 0)."""
    n = out.size
    last = np.uint64(tab.size - 1)
    for j in range((n + 3) // 4):
        h = _mix(key + np.uint64(start // 4 + j) * np.uint64(0x9E3779B97F4A7C15))
        for s in range(4):
            i = 4 * j + s
            if i >= n:
                break
            idx = (h >> np.uint64(16 * s)) & last
            if idx == 0 or idx == last:
                # extreme bin: draw the exact tail value from a second hash
                u = _mix(h ^ (np.uint64(0xD1B54A32D192ED03) + np.uint64(s)))
                p = ((u >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0) / tab.size
                z = _lower_tail(p)
                out[i] = scale * (z if idx == 0 else -z)
            else:
                out[i] = scale * tab[idx]


_TAB: np.ndarray | None = None


def stream_key(seed: int, name: str) -> int:
    """64-bit key of the random stream `name` under `seed` (stable across platforms)."""
    m = 0xFFFFFFFFFFFFFFFF
    z = (int(seed) * 0x9E3779B97F4A7C15 + zlib.crc32(name.encode())) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def normal(
    shape: tuple[int, ...], seed: int, name: str, scale: float = 1.0, dtype: type = np.float64
) -> np.ndarray:
    """Deterministic N(0, scale^2) samples of the given shape from stream (seed, name)."""
    global _TAB
    if _TAB is None:
        _TAB = _table(_TABLE_BITS)
    dt = np.dtype(dtype)
    tab = _TAB.astype(dt)
    out = np.empty(shape, dt)
    flat = out.reshape(-1)
    key = np.uint64(stream_key(seed, name))
    sc = dt.type(scale)
    starts = range(0, flat.size, _CHUNK)
    workers = min(len(starts), os.cpu_count() or 1)
    if workers <= 1:
        _fill(flat, 0, key, sc, tab)
    else:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda s: _fill(flat[s:s + _CHUNK], s, key, sc, tab), starts))
    return out
