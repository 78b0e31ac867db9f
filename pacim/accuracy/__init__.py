"""Accuracy on real data: datasets (IDX, CIFAR, ImageFolder, npz), evaluation of ONNX networks
per mode, Fashion-MNIST fetching, threshold calibration, and training (`train/`, torch extra).

``from pacim.accuracy import evaluate, accuracy_command`` keeps working from the old module.
"""

from .cli import accuracy_command, data_group
from .evaluate import (
    DEFAULT_MODES,
    AccuracyProgress,
    Column,
    ColumnRun,
    evaluate,
    parse_modes,
    result_text,
    run_columns,
)

__all__ = [
    "DEFAULT_MODES",
    "AccuracyProgress",
    "Column",
    "ColumnRun",
    "accuracy_command",
    "data_group",
    "evaluate",
    "parse_modes",
    "result_text",
    "run_columns",
]
