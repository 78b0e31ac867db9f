"""ONNX import: a CNN graph -> pacim's workload IR, plus a numpy executor of the graph.

reader: ONNX -> nodes and constants; executor: OnnxNet (BatchNormalization folded, macro
layers float / exact / PAC) and from_onnx; ops: the numpy operators; macro_layers: the macro
front end with one activation scale per image. Needs the onnx extra.
"""

from .executor import FIRST_LAYER_CHOICES, MODES, MacroLayer, Mode, OnnxNet, as_config, from_onnx
from .macro_layers import MacroConfig, PreparedWeight, macro_conv2d, macro_linear
from .ops import OPS, SUPPORTED_OPS, float_conv2d
from .reader import INSTALL_HINT, Graph, Node, load_model, read_graph

__all__ = [
    "FIRST_LAYER_CHOICES",
    "INSTALL_HINT",
    "MODES",
    "OPS",
    "SUPPORTED_OPS",
    "Graph",
    "MacroConfig",
    "MacroLayer",
    "Mode",
    "Node",
    "OnnxNet",
    "PreparedWeight",
    "as_config",
    "float_conv2d",
    "from_onnx",
    "load_model",
    "macro_conv2d",
    "macro_linear",
    "read_graph",
]
