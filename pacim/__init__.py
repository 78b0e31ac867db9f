"""pacim: a cycle-level compute-in-memory simulator (PACiM, Jia et al. BP/BS, INSERTQUANT).

Public API::

    import pacim
    arch = pacim.load_arch("arch_configs/pacim_65nm.yaml", {"pac.operand": 3, "pac.dynamic": None})
    wl = pacim.load_workload("resnet18")
    report = pacim.simulate(arch, wl)
    report.to_dict()["tops_per_w"]
"""

from __future__ import annotations

from typing import Any

from .arch import Arch, load_arch
from .errors import ConfigError, PacimError

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "ConfigError",
    "PacimError",
    "load_arch",
    "load_workload",
    "simulate",
    "sweep",
]


def load_workload(name_or_path: str, **options: Any) -> Any:
    """Build a workload by name (resnet18, resnet18-cifar, llm-layer, smollm2-135m) or path."""
    from .workloads import load_workload as _load

    return _load(name_or_path, **options)


def simulate(arch: Any, workload: Any, data: bool = True, **kw: Any) -> Any:
    """Simulate a workload on an architecture; returns a Report (see pacim.pipeline.simulate)."""
    from .pipeline import simulate as _simulate

    return _simulate(arch, workload, data, **kw)


def sweep(arch: Any, grid: Any, workloads: Any, **kw: Any) -> Any:
    """Run a parameter sweep; returns one flat record per point (see pacim.sweeps.sweep)."""
    from .sweeps import sweep as _sweep

    return _sweep(arch, grid, workloads, **kw)
