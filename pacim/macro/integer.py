"""Integer entry points on code matrices: macro_mac, exact_mac, pac_mac, dynamic_mac.

qx (P, N) holds activation codes, one input vector per row; qw (K, N) weight codes, one column
of the macro per row. They run through the same engine as the layers (a 1x1 layer of P rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..quant import QTensor, check_bits, uint_dtype
from . import engine
from .core import DEFAULT_THRESHOLDS, check_approx, check_dynamic, check_operand
from .operands import Activations, PreparedWeight, activations_from_codes, prepare_weight


@dataclass(frozen=True)
class MacResult:
    """Integer-domain MAC results plus what the hardware did to get them."""

    mac: np.ndarray  # (P, K) float64
    digital_cycles: np.ndarray  # (P,) int16: digital bit-serial cycles for each row (all K)
    x_counts: np.ndarray  # (P, xbit) ones of each activation plane per row
    w_counts: np.ndarray  # (K, wbit)
    level_counts: dict[int, int] = field(default_factory=dict)  # digital cycles -> rows


def check_codes(q: np.ndarray, bits: int, name: str) -> np.ndarray:
    """A non-empty 2-D unsigned code matrix in 0..2^bits-1, narrowed to uint8/uint16."""
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"{name} must be a 2-D code matrix, got shape {q.shape}")
    if q.size == 0:
        raise ValueError(f"{name} is empty (shape {q.shape})")
    if q.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold unsigned integer codes, got dtype {q.dtype}")
    if q.dtype.kind == "i" and int(q.min()) < 0:
        raise ValueError(f"{name} holds negative codes")
    if int(q.max()) >= (1 << bits):  # checked before any narrowing conversion
        raise ValueError(f"{name} holds codes >= 2^{bits}")
    if q.dtype != uint_dtype(bits):
        q = q.astype(uint_dtype(bits))
    return np.ascontiguousarray(q)


def check_counts(c: np.ndarray, rows: int, bits: int, n: int, name: str) -> np.ndarray:
    """Caller-supplied plane counts: shape (rows, bits), values in 0..N, as int64."""
    c = np.asarray(c)
    if c.shape != (rows, bits):
        raise ValueError(f"{name} must have shape ({rows}, {bits}), got {c.shape}")
    if c.size and (int(c.min()) < 0 or int(c.max()) > n):
        raise ValueError(f"{name} must hold plane counts in 0..{n}")
    return c.astype(np.int64)


def code_operands(
    qx: np.ndarray, qw: np.ndarray, xbit: int, wbit: int,
    x_counts: np.ndarray | None = None, w_counts: np.ndarray | None = None,
) -> tuple[Activations, PreparedWeight]:
    """Validated code matrices as the engine's operands (a 1x1 layer)."""
    qx = check_codes(qx, xbit, "qx")
    qw = check_codes(qw, wbit, "qw")
    if qx.shape[1] != qw.shape[1]:
        raise ValueError(f"qx has N={qx.shape[1]} but qw has N={qw.shape[1]}")
    n = qx.shape[1]
    act = activations_from_codes(qx, xbit, 1.0, 0.0)
    if x_counts is not None:
        act = act.with_window_counts(check_counts(x_counts, qx.shape[0], xbit, n, "x_counts"))
    pw = prepare_weight(QTensor(q=qw, scale=1.0, bias=0.0, bits=wbit))
    if w_counts is not None:
        pw = replace(pw, counts=check_counts(w_counts, qw.shape[0], wbit, n, "w_counts"))
    return act, pw


def macro_mac(
    qx: np.ndarray,
    qw: np.ndarray,
    *,
    xbit: int,
    wbit: int,
    operand: int,
    approx: str = "pac",
    dynamic: tuple[float, float, float] | None = None,
    x_counts: np.ndarray | None = None,
    w_counts: np.ndarray | None = None,
) -> MacResult:
    """MAC of every row of qx (P, N) with every row of qw (K, N) through the macro.

    x_counts / w_counts may be passed when already known (they are validated, then used).
    """
    xbit = check_bits(xbit, "xbit")
    wbit = check_bits(wbit, "wbit")
    operand = check_operand(operand, xbit, wbit)
    approx = check_approx(approx)
    dynamic = check_dynamic(dynamic, xbit, wbit, operand)
    act, pw = code_operands(qx, qw, xbit, wbit, x_counts, w_counts)
    parts = engine.compute(act, pw, operand=operand, approx=approx, dynamic=dynamic)
    return MacResult(mac=parts.mac(), digital_cycles=parts.cycles, x_counts=parts.x_counts,
                     w_counts=pw.counts, level_counts=parts.level_counts)


def exact_mac(qx: np.ndarray, qw: np.ndarray, *, xbit: int = 8, wbit: int = 8) -> np.ndarray:
    """Exact integer dot products sum_n qx[p, n] * qw[k, n] as int64 (P, K)."""
    r = macro_mac(qx, qw, xbit=xbit, wbit=wbit, operand=max(xbit, wbit), approx="truncate")
    return np.rint(r.mac).astype(np.int64)


def pac_mac(
    qx: np.ndarray,
    qw: np.ndarray,
    *,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
) -> np.ndarray:
    """Static-operand MAC (digital set D(operand), rest approximated), float64 (P, K)."""
    return macro_mac(qx, qw, xbit=xbit, wbit=wbit, operand=operand, approx=approx).mac


def dynamic_mac(
    qx: np.ndarray,
    qw: np.ndarray,
    *,
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS,
    xbit: int = 8,
    wbit: int = 8,
    operand: int = 4,
    approx: str = "pac",
) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic-configuration MAC: (mac (P, K), digital cycles per row (P,))."""
    r = macro_mac(
        qx, qw, xbit=xbit, wbit=wbit, operand=operand, approx=approx, dynamic=thresholds
    )
    return r.mac, r.digital_cycles
