"""A training record (``train.json``) as markdown: what ran, with which seed, how long, how well.

``python -m pacim.accuracy.train.record A.train.json [B.train.json ...] > TRAINING.md``: one
section per record, titled by its file name (``fashion-resnet18.train.json``: fashion-resnet18).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _precision(c: dict[str, Any]) -> str:
    if c.get("wbit") is None and c.get("xbit") is None:
        return f"the arch's ({c.get('arch', 'pacim_65nm')}: W8A8)"
    return (f"W{c.get('wbit') or 8}A{c.get('xbit') or 8}, the first conv at "
            f"{c.get('first_bits', 8)} bits")


def training_markdown(rec: dict[str, Any], title: str = "Training record") -> str:
    """Markdown summary of a train.json record."""
    c = rec["config"]
    cmds = rec.get("commands") or [rec.get("command")]
    total = sum(s["seconds"] for s in rec["stages"].values())
    lines = [f"# {title}", "",
             "Generated from `train.json` by `python -m pacim.accuracy.train.record`.", "",
             f"- data: `{c['data']}`, {rec.get('train_images')} training images "
             f"({c['holdout']} held out: train[{rec['holdout']['start']}:"
             f"{rec['holdout']['stop']}]), {rec.get('test_images')} test images",
             f"- network: PacResNet18 width {c['width']}, stem stride {c['stem_stride']}; "
             f"seed {c['seed']}; batch {c['batch']}; torch {rec.get('torch', '?')}",
             f"- normalization: mean {rec['normalization']['mean']}, std "
             f"{rec['normalization']['std']}",
             f"- precision: {_precision(c)}",
             *([f"- started from `{c['init']}` (`--init`; BatchNorm frozen)"] if c.get("init")
               else []),
             *([f"- pac stage loss: PAC + {c['pac_float_weight']:g} x float"]
               if c.get("pac_float_weight") else []),
             f"- wall time of all stages: {total / 60:.1f} min "
             f"({total / 3600:.2f} h; training and the per-epoch test pass, data loading "
             "excluded)", "", "Command lines, in the order they ran (a rerun resumes):", ""]
    for cmd, code in zip(cmds, rec.get("code", [""] * len(cmds)), strict=False):
        lines.append(f"- `{cmd}` ({code})")
    lines += ["", "| stage | layer mode | epochs | lr | wall time | test top-1 (torch, own mode) |",
              "|---|---|---|---|---|---|"]
    for name, s in rec["stages"].items():
        mode = s["mode"] + (f", trim noise {s['trim_noise']:g} %" if s["mode"] == "nat" else "")
        top1 = 100 * s.get("test_top1", float("nan"))
        lines.append(f"| {name} | {mode} | {s['epochs']} | {s['lr']:g} | "
                     f"{s['seconds'] / 60:.1f} min | {top1:.2f}% |")
    joint = any("test_top1_float" in e for e in rec["epochs"])  # --pac-float-weight runs
    lines += ["", "Every epoch:", "", "| stage | epoch | loss | train top-1 | test top-1 | "
              + ("test top-1 in float | " if joint else "")
              + "mean digital cycles | seconds |", "|---|---|---|---|---|---|---|"
              + ("---|" if joint else "")]
    for e in rec["epochs"]:
        cyc = e.get("digital_cycles_mean")
        fl = e.get("test_top1_float")
        col = (f"{'-' if fl is None else f'{100 * fl:.2f}%'} | " if joint else "")
        lines.append(f"| {e['stage']} | {e['epoch']} | {e['loss']:.4f} | "
                     f"{100 * e['train_top1']:.2f}% | {100 * e['test_top1']:.2f}% | {col}"
                     f"{'-' if cyc is None else f'{cyc:.2f}'} | {e['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the markdown of the train.json files given as arguments, one section each."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m pacim.accuracy.train.record TRAIN.json [TRAIN.json ...]",
              file=sys.stderr)
        return 2
    parts = []
    for a in args:
        name = Path(a).name.removesuffix(".json").removesuffix(".train")
        parts.append(training_markdown(json.loads(Path(a).read_text()),
                                       f"Training record: {name}"))
    print("\n".join(parts), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
