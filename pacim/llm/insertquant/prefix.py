"""PrefixQuant's prefix in front of a sequence."""

from __future__ import annotations

import numpy as np


def with_prefix(w: np.ndarray, prefix: tuple[int, ...]) -> np.ndarray:
    """The window with the prefix in front (not again when it starts with it, as with a BOS)."""
    pre = np.asarray(prefix, dtype=np.int64)
    if not pre.size or (w.size >= pre.size and np.array_equal(w[: pre.size], pre)):
        return w
    return np.concatenate([pre, w])
