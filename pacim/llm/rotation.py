"""Online block-Hadamard rotation of the quantized linear inputs (QuaRot-style).

A linear ``y = x W^T`` is unchanged when its input is rotated by an orthogonal R and its weight
by the same R: ``y = (x R) (W R)^T``. With R block-diagonal of normalized Sylvester Hadamard
matrices (entries +-1/sqrt(b)), a channel outlier of x is spread evenly over the b channels of
its block, so a per-tensor static quantizer of ``x R`` loses far less resolution to a few
outlier channels; ``W R`` is rotated offline, once. In hardware the input rotation is a fast
Walsh-Hadamard transform: log2(b) add/subtract stages per block in the digital periphery before
the activations are written to the CiM macro (``adds_per_row``); the 1/sqrt(b) normalization
folds into the static activation scale.

pacim's ``insertquant`` front end rotates every quantized site (``docs/LLM.md`` says why and what
it buys on SmolLM2); ``--rotation none`` gives INSERTQUANT exactly as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pacim.errors import PacimError

ROTATIONS: tuple[str, ...] = ("hadamard", "none")
DEFAULT_ROTATION = "hadamard"


def check_rotation(rotation: str) -> str:
    """Return ``rotation`` if it is one of ROTATIONS, else raise a PacimError naming them."""
    if rotation not in ROTATIONS:
        raise PacimError(f"unknown rotation {rotation!r}; choose from {', '.join(ROTATIONS)}")
    return rotation


@lru_cache(maxsize=16)
def hadamard(n: int) -> np.ndarray:
    """Normalized Sylvester Hadamard matrix of order n (a power of two): H H^T = I, H = H^T."""
    if n < 1 or n & (n - 1):
        raise PacimError(f"Hadamard order must be a power of two, got {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    out = (h / np.sqrt(n)).astype(np.float32)
    out.setflags(write=False)
    return out


def block_size(dim: int, max_block: int = 4096) -> int:
    """Largest power of two dividing ``dim`` (at most ``max_block``): the Hadamard block size."""
    if dim < 1:
        raise PacimError(f"dimension must be positive, got {dim}")
    return min(dim & -dim, max_block)


@dataclass(frozen=True)
class BlockHadamard:
    """R = I_(dim/block) (x) H_block, applied to the last axis: ``apply(x) = x @ R``."""

    dim: int
    block: int

    def __post_init__(self) -> None:
        if self.block < 1 or self.dim % self.block:
            raise PacimError(f"block {self.block} does not divide dimension {self.dim}")
        hadamard(self.block)  # validates the order

    @classmethod
    def for_dim(cls, dim: int) -> BlockHadamard:
        """The rotation pacim uses for a dimension (largest power-of-two block)."""
        return cls(dim, block_size(dim))

    @property
    def identity(self) -> bool:
        """True when the block is 1 (an odd dimension): the rotation does nothing."""
        return self.block == 1

    @property
    def adds_per_row(self) -> int:
        """Additions/subtractions of a fast Walsh-Hadamard transform of one row."""
        return self.dim * int(np.log2(self.block))

    def matrix(self) -> np.ndarray:
        """The dense (dim, dim) matrix R (for tests and small dimensions)."""
        return np.kron(np.eye(self.dim // self.block, dtype=np.float32), hadamard(self.block))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x @ R over the last axis (float32; one BLAS GEMM per call)."""
        x = np.asarray(x)
        if x.shape[-1] != self.dim:
            raise PacimError(f"rotation of dimension {self.dim} applied to shape {x.shape}")
        if self.identity:
            return x.astype(np.float32, copy=False)
        lead = x.shape[:-1]
        xb = np.asarray(x, dtype=np.float32).reshape(-1, self.block)
        return (xb @ hadamard(self.block)).reshape(*lead, self.dim)
