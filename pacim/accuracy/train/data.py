"""Training data for `pacim train`: any dataset pacim reads, in memory, normalized, augmented.

The training split minus a held-out tail (never trained on; used to calibrate thresholds) is
the training set; the normalization is the per-channel mean and std of its pixels (after
/255), recorded in the exported model. Augmentation: random shifts by up to `pad` pixels (zero
padding of the raw image) and horizontal flips, drawn from a seeded generator per epoch, so a
resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import PacimError
from ..datasets import Dataset, load_dataset
from ..norm import Normalization


@dataclass
class TensorData:
    """Images (N, C, H, W) as float32 in [0, 1] and int64 labels, with a name."""

    x: torch.Tensor
    y: torch.Tensor
    name: str
    classes: list[str] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        """Image height and width."""
        return int(self.x.shape[2]), int(self.x.shape[3])


def _tensors(ds: Dataset, start: int, stop: int, name: str) -> TensorData:
    x, y = ds.get(start, stop)
    if x.ndim != 4:
        raise PacimError(f"{ds.name}: training needs images (N, C, H, W), got shape {x.shape}")
    xf = torch.from_numpy(x.astype(np.float32))
    return TensorData(xf, torch.from_numpy(y), name, ds.classes)


def training_sets(data: str, test_data: str | None, *, holdout: int, limit: int | None,
                  test_limit: int | None) -> tuple[TensorData, TensorData, dict[str, int]]:
    """(train, test, holdout slice) from a dataset name or path (its train and test splits)."""
    train_ds = load_dataset(data, split="train")
    test_ds = load_dataset(test_data or data, split="test")
    if test_data is None and train_ds.name == test_ds.name:
        raise PacimError(f"{data}: it holds one split only; give the test set with --test-data")
    n = len(train_ds)
    if not 0 <= holdout < n:
        raise PacimError(f"--holdout {holdout} must be in 0..{n - 1} ({n} training images)")
    stop = n - holdout
    if limit is not None:
        stop = min(stop, int(limit))
    train = _tensors(train_ds, 0, stop, f"{train_ds.name}[0:{stop}]")
    tn = len(test_ds) if test_limit is None else min(int(test_limit), len(test_ds))
    test = _tensors(test_ds, 0, tn, f"{test_ds.name}[0:{tn}]")
    if test.x.shape[1:] != train.x.shape[1:]:
        raise PacimError(f"test images {tuple(test.x.shape[1:])} differ from the training "
                         f"images {tuple(train.x.shape[1:])}")
    return train, test, {"start": n - holdout, "stop": n, "images": holdout}


def channel_normalization(d: TensorData) -> Normalization:
    """Per-channel mean and std of the training pixels (float64 sums, 4 decimals)."""
    x = d.x.double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return Normalization(tuple(round(float(v), 4) for v in mean),
                         tuple(round(float(v), 4) for v in std))


def normalize(x: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """(x - mean[c]) / std[c]."""
    c = x.shape[1]
    m = torch.tensor(np.broadcast_to(norm.mean, (c,)).copy(), dtype=x.dtype).reshape(1, c, 1, 1)
    s = torch.tensor(np.broadcast_to(norm.std, (c,)).copy(), dtype=x.dtype).reshape(1, c, 1, 1)
    return (x - m) / s


def augment(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random shifts within +-pad (zero fill) and horizontal flips, per image."""
    b, _, h, w = x.shape
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad,) * 4)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        x = xp[torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
               rows, cols]
    if flip:
        f = torch.rand(b, generator=gen) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(-1), x)
    return x


def batches(d: TensorData, batch: int, norm: Normalization, *, gen: torch.Generator | None,
            pad: int = 0, flip: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalized batches: shuffled and augmented when gen is given, else in order."""
    n = len(d)
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for i in range(0, n, batch):
        idx = order[i:i + batch]
        x = d.x[idx]
        if gen is not None:
            x = augment(x, pad, flip, gen)
        yield normalize(x, norm), d.y[idx]
