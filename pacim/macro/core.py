"""The bit-serial D-CiM macro with probabilistic approximate computation (PAC), on code matrices.

For one output, a dot product of length N between activation codes q_x (xbit bits) and weight
codes q_w (wbit bits) is split into bit-plane pairs (i, j), i a weight plane, j an activation
plane. Pairs in the digital set D are computed exactly (one bit-serial cycle each); every other
pair is approximated:

- ``pac``:       S_w,i * S_x,j / N   (S = ones of the plane over the N-long vector)
- ``truncate``:  0
- ``expected``:  N / 4               (independent bits with p = 1/2)

and mac = sum_pairs 2^(i+j) * term.

This module holds the definitions (digital sets, dynamic levels, the approximated term); the
arithmetic is in `engine` (GEMM + popcount + count products), the entry points in `integer`
(code matrices) and `layer` (prepared operands, floats).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

APPROX_METHODS = ("pac", "truncate", "expected")
# PACiM's dynamic workload configuration: speculation normalised to a 64x3x3 window.
DYN_REF_WINDOW = 576
DEFAULT_THRESHOLDS = (7000.0, 10000.0, 13000.0)
# Relative pair-sum limits (i' + j' over the digital block) moved to PAC per level: the paper's
# i + j <= 8 / 9 / 10 at 8b/8b, operand 4 (planes 4..7), i.e. i' + j' <= 0 / 1 / 2.
_DYN_REL_LIMITS = (None, 0, 1, 2)
F32_EXACT = 2**24  # integers below this are exact in float32
F64_EXACT = 2**53


def check_operand(operand: int, xbit: int, wbit: int) -> int:
    """Validate operand in 1..max(xbit, wbit)."""
    if isinstance(operand, bool) or not isinstance(operand, (int, np.integer)):
        raise ValueError(f"operand must be an integer, got {operand!r}")
    hi = max(xbit, wbit)
    if not 1 <= int(operand) <= hi:
        raise ValueError(f"operand must be in 1..max(xbit, wbit) = 1..{hi}, got {operand}")
    return int(operand)


def check_approx(approx: str) -> str:
    """Validate the approximation method name."""
    if approx not in APPROX_METHODS:
        raise ValueError(f"approx must be one of {', '.join(APPROX_METHODS)}; got {approx!r}")
    return approx


def check_dynamic(
    dynamic: object, xbit: int, wbit: int, operand: int
) -> tuple[float, float, float] | None:
    """Validate dynamic thresholds (None or 3 ascending finite numbers) and the configuration."""
    if dynamic is None:
        return None
    try:
        t = tuple(float(v) for v in dynamic)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"dynamic must be None or 3 thresholds, got {dynamic!r}") from None
    if len(t) != 3 or not all(np.isfinite(t)):
        raise ValueError(f"dynamic must be 3 finite thresholds (t0, t1, t2), got {dynamic!r}")
    if not t[0] <= t[1] <= t[2]:
        raise ValueError(f"dynamic thresholds must be ascending t0 <= t1 <= t2, got {t}")
    if (xbit, wbit, operand) != (8, 8, 4):
        raise ValueError(
            "dynamic configuration is defined for xbit=8, wbit=8, operand=4 (PACiM); "
            f"got xbit={xbit}, wbit={wbit}, operand={operand}"
        )
    return t  # type: ignore[return-value]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@lru_cache(maxsize=256)
def digital_set(xbit: int, wbit: int, operand: int) -> np.ndarray:
    """Boolean (wbit, xbit) mask of D(operand): i >= wbit - operand and j >= xbit - operand."""
    i = np.arange(wbit)[:, None]
    j = np.arange(xbit)[None, :]
    return _readonly((i >= wbit - operand) & (j >= xbit - operand))


@lru_cache(maxsize=64)
def dynamic_digital_sets(xbit: int, wbit: int, operand: int) -> tuple[np.ndarray, ...]:
    """Digital sets of the dynamic levels, from most to fewest digital pairs (16/15/13/10)."""
    d = digital_set(xbit, wbit, operand)
    rel = (np.arange(wbit)[:, None] - (wbit - operand)) + (
        np.arange(xbit)[None, :] - (xbit - operand)
    )
    sets = []
    for lim in _DYN_REL_LIMITS:
        sets.append(_readonly(d.copy() if lim is None else d & (rel > lim)))
    return tuple(sets)


def pac_products(digital: np.ndarray) -> int:
    """PAC-engine count products per output for a (wbit, xbit) digital set.

    sum_{(i,j) not in D} 2^(i+j) S_w,i S_x,j = sum_i 2^i S_w,i A_i with A_i = sum of 2^j S_x,j
    over the activation planes j approximated with weight plane i. A_i depends only on the input
    vector, and weight planes with the same set of j share it; the per-column constants
    sum 2^i S_w,i over such a group are fixed at weight-load time. So each output needs one
    count product per distinct non-empty row pattern of the approximated pairs: 2 at static
    operand 4 (8b/8b), 3 / 4 / 5 at the dynamic levels with 15 / 13 / 10 digital cycles.
    """
    nd = ~np.asarray(digital, dtype=bool)
    return len({tuple(r) for r in nd if r.any()})


def counted_planes(digital: np.ndarray) -> tuple[int, int]:
    """(activation planes, weight planes) whose counts PAC uses for a (wbit, xbit) digital set:
    the planes with at least one approximated pair."""
    nd = ~np.asarray(digital, dtype=bool)
    return int(nd.any(axis=0).sum()), int(nd.any(axis=1).sum())


@lru_cache(maxsize=256)
def _products_by_cycles(xbit: int, wbit: int, operand: int) -> tuple[tuple[int, int], ...]:
    sets = [digital_set(xbit, wbit, operand)]
    if (xbit, wbit, operand) == (8, 8, 4):
        sets = list(dynamic_digital_sets(xbit, wbit, operand))
    return tuple((int(d.sum()), pac_products(d)) for d in sets)


def pac_products_by_cycles(xbit: int, wbit: int, operand: int) -> dict[int, int]:
    """Digital cycles -> PAC-engine products per output, for the static set and (8b/8b,
    operand 4) the dynamic levels."""
    return dict(_products_by_cycles(xbit, wbit, operand))


def pair_weights(xbit: int, wbit: int) -> np.ndarray:
    """2^(i+j) as float64 (wbit, xbit)."""
    return np.ldexp(1.0, np.arange(wbit)[:, None] + np.arange(xbit)[None, :])


def approx_matrix(nd: np.ndarray, xbit: int, wbit: int) -> np.ndarray:
    """C[i, j] = 2^(i+j) on the approximated pairs nd, else 0."""
    return pair_weights(xbit, wbit) * nd


def plane_groups(*nds: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Weight planes grouped by their approximated activation planes in every pattern of nds.

    Planes of a group share one PAC-engine count product per output (see pac_products): the
    approximated term is sum over groups g of (sum_{i in g} 2^i S_w,i) (sum_{j} 2^j S_x,j) / N.
    """
    keys: dict[tuple, list[int]] = {}
    for i in range(nds[0].shape[0]):
        rows = tuple(tuple(bool(v) for v in nd[i]) for nd in nds)
        if any(any(r) for r in rows):
            keys.setdefault(rows, []).append(i)
    return tuple(tuple(g) for g in keys.values())


def approx_factors(
    approx: str, nd: np.ndarray, sx: np.ndarray, sw: np.ndarray, n: int, xbit: int, wbit: int,
    groups: tuple[tuple[int, ...], ...] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The approximated pairs' term as a low-rank product (left (P, r), right (r, K)), or None.

    pac:      sum_ij 2^(i+j) Sw_i Sx_j / N, one rank per weight-plane group (plane_groups(nd)
              unless given: pass the groups of several patterns to share `right`)
    expected: sum_ij 2^(i+j) N / 4, the same for every output
    truncate: nothing.
    """
    if approx == "truncate" or not nd.any():
        return None
    rows = np.asarray(sx).shape[0]
    if approx == "expected":
        c = float(approx_matrix(nd, xbit, wbit).sum())
        return np.full((rows, 1), c * n / 4.0), np.ones((1, np.asarray(sw).shape[0]))
    groups = plane_groups(nd) if groups is None else groups
    pw2, px2 = np.ldexp(1.0, np.arange(wbit)), np.ldexp(1.0, np.arange(xbit))
    wmask = np.zeros((len(groups), wbit))
    xmask = np.zeros((len(groups), xbit))
    for g, planes in enumerate(groups):
        wmask[g, list(planes)] = pw2[list(planes)]
        xmask[g] = px2 * nd[planes[0]]  # every plane of a group pairs with the same j's
    left = (np.asarray(sx, dtype=np.float64) @ xmask.T) / n
    return left, wmask @ np.asarray(sw, dtype=np.float64).T


def approx_term(
    approx: str, nd: np.ndarray, sx: np.ndarray, sw: np.ndarray, n: int, xbit: int, wbit: int
) -> np.ndarray | float:
    """Sum over approximated pairs nd of 2^(i+j) * term, (P, K), or 0.0."""
    f = approx_factors(approx, nd, sx, sw, n, xbit, wbit)
    return 0.0 if f is None else f[0] @ f[1]


@lru_cache(maxsize=64)
def moved_pairs(xbit: int, wbit: int, operand: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per dynamic level, the (i, j) pairs of D(operand) it moves to PAC (level 0: none)."""
    d = digital_set(xbit, wbit, operand)
    return tuple(tuple((int(i), int(j)) for i, j in zip(*np.nonzero(d & ~d_lv), strict=True))
                 for d_lv in dynamic_digital_sets(xbit, wbit, operand))


def speculation(x_counts: np.ndarray, n: int) -> np.ndarray:
    """PACiM's output-size speculation E = (sum of q_x over the window) * 576 / N, per row."""
    xbit = x_counts.shape[1]
    sums = x_counts.astype(np.float64) @ np.ldexp(1.0, np.arange(xbit))
    return sums * (DYN_REF_WINDOW / n)


def dynamic_levels(e: np.ndarray, thresholds: tuple[float, float, float]) -> np.ndarray:
    """Level per row: 0 (E > t2, 16 cycles), 1 (t1 < E <= t2), 2 (t0 < E <= t1), 3 (E <= t0)."""
    t0, t1, t2 = thresholds
    lv = np.full(e.shape, 3, dtype=np.int8)
    lv[e > t0] = 2
    lv[e > t1] = 1
    lv[e > t2] = 0
    return lv
