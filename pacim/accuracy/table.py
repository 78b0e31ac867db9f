"""The accuracy table of a trained model: top-1 per macro configuration in one pass over the data.

Columns (the first conv exact in every macro column, as on PACiM):

- ``float``: the float64 network;
- ``exact``: W8A8 through the macro at operand 8 (exact integer arithmetic);
- ``pac_static``: PAC at operand 4, no dynamic configuration (16 digital cycles);
- ``pac_dynamic``: PAC with the arch's dynamic configuration (16/15/13/10 cycles);
- ``truncate``, ``expected``: the baselines at operand 4 (approximated pairs = 0, or N/4).

Each column's top-1, its top-1 agreement with float and its seconds per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..arch import Arch, load_arch
from ..errors import PacimError
from .evaluate import Column, open_model_and_data, run_columns

COLUMNS = ("float", "exact", "pac_static", "pac_dynamic", "truncate", "expected")


def table_columns(arch: Arch) -> dict[str, Column]:
    """The table's columns on an arch with PAC at operand 4 and dynamic configuration."""
    from ..workloads.onnx import MacroConfig

    m = MacroConfig.from_arch(arch)
    if m.dynamic is None:
        raise PacimError(f"arch {arch.name}: the table needs dynamic thresholds (pac.dynamic)")

    def pac(approx: str, dynamic: Any = None) -> MacroConfig:
        return MacroConfig(m.xbit, m.wbit, 4, approx, dynamic, True, m.first_layer_exact)

    return {"float": Column("float"), "exact": Column("exact", pac("pac")),
            "pac_static": Column("pac", pac("pac")),
            "pac_dynamic": Column("pac", pac("pac", m.dynamic)),
            "truncate": Column("pac", pac("truncate")),
            "expected": Column("pac", pac("expected"))}


def accuracy_row(model: str | Path, data: str | Path = "fashion-mnist", *,
                 arch: Arch | str = "pacim_65nm", limit: int | None = None, batch: int = 100,
                 columns: tuple[str, ...] = COLUMNS, progress: Any = None) -> dict[str, Any]:
    """One row of the table: top-1, agreement with float and s/image per column."""
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    cols = {k: v for k, v in table_columns(arch).items() if k in columns}
    net, ds, norm, _ = open_model_and_data(model, data)
    total = len(ds) if limit is None else min(limit, len(ds))
    run = run_columns(net, ds, cols, total=total, batch=batch, norm=norm, progress=progress)
    n = int(run.labels.size)
    return {"model": str(model), "images": n, "thresholds": list(arch.dynamic_thresholds),
            "top1": run.top1(),
            "agreement_with_float": {k: run.agreement(k, "float") for k in cols
                                     if "float" in cols and k != "float"},
            "s_per_image": {k: s / n for k, s in run.seconds.items()}}
