"""Moved to `pacim.accuracy.datasets` and `pacim.accuracy.norm`; kept so old imports work."""

from .accuracy.datasets import (  # noqa: F401
    IMAGE_EXTS,
    ArrayDataset,
    Dataset,
    FolderDataset,
    SubsetDataset,
    load_dataset,
    read_cifar,
    read_idx_pair,
    read_image,
    read_npz,
    to_float,
)
from .accuracy.norm import NORM_PRESETS, Normalization  # noqa: F401
