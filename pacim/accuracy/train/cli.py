"""`pacim train`: PAC-aware training of PACiM's ResNet-18 (needs the train extra: torch)."""

from __future__ import annotations

import shlex
import sys

import click

from ...errors import PacimError

INSTALL_HINT = "pip install 'pacim[train,onnx]' (torch==2.13.0, a CPU build)"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise PacimError(f"--trim-noise: expected comma-separated numbers, got {text!r}") from None


@click.command("train")
@click.option("--data", default="fashion-mnist", show_default=True, metavar="NAME|DIR",
              help="Dataset with a train and a test split: fashion-mnist, an IDX folder, a "
                   "CIFAR python folder, or (with --test-data) an ImageFolder tree / .npz.")
@click.option("--test-data", default=None, metavar="PATH", help="Test set, when --data has "
              "a single split.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: checkpoints, <stage>.onnx, train.json. Rerun to resume.")
@click.option("--stages", default="pretrain,nat,pac", show_default=True,
              help="Comma-separated, in order: pretrain, nat, pac.")
@click.option("--width", type=int, default=64, show_default=True,
              help="Channels of the first stage (64 in the paper; 16-32 for 2-core budgets).")
@click.option("--stem-stride", type=int, default=1, show_default=True,
              help="Stride of the 3x3 stem (2 quarters the work).")
@click.option("--pretrain", "pretrain_mode", type=click.Choice(["qat", "float"]), default="qat",
              show_default=True, help="Pretraining as W8A8 QAT with PACT, or float.")
@click.option("--epochs", type=int, default=30, show_default=True, help="Pretraining epochs.")
@click.option("--lr", type=float, default=0.05, show_default=True,
              help="Pretraining peak learning rate (cosine, 1 epoch warm-up).")
@click.option("--nat-epochs", type=int, default=2, show_default=True,
              help="Epochs per noise level of NAT.")
@click.option("--nat-lr", type=float, default=0.001, show_default=True)
@click.option("--trim-noise", default="25,50,75", show_default=True,
              help="NAT noise levels (percent of the output), one sub-stage each.")
@click.option("--pac-epochs", type=int, default=2, show_default=True,
              help="Epochs of fine-tuning with the PAC macro in the forward pass.")
@click.option("--pac-lr", type=float, default=0.001, show_default=True)
@click.option("--arch", default="pacim_65nm", show_default=True,
              help="Chip whose PAC configuration (operand, approx, thresholds) the pac stage "
                   "uses.")
@click.option("--pac-static", is_flag=True, help="Fine-tune with static PAC (no dynamic "
              "configuration).")
@click.option("--pac-float-weight", type=float, default=0.0, show_default=True,
              help="pac stage: add this weight x the float network's loss (keeps float "
                   "accuracy while tuning for PAC; 0 is PAC only).")
@click.option("--init", "init", default=None, metavar="MODEL.onnx",
              help="Start from a model pacim train exported (e.g. a shipped one); its "
                   "BatchNorms stay frozen. Width and stem stride must match.")
@click.option("--wbit", type=int, default=None, help="Weight bits of QAT (default: the "
              "arch's macro.wbit); e.g. 4 or 1 for Jia-style networks.")
@click.option("--xbit", type=int, default=None, help="Activation bits of QAT (default: the "
              "arch's macro.xbit).")
@click.option("--first-bits", type=int, default=8, show_default=True,
              help="Bits of the first conv when --wbit/--xbit are narrower.")
@click.option("--batch", type=int, default=128, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--label-smoothing", type=float, default=0.01, show_default=True)
@click.option("--mixup", type=float, default=0.0, show_default=True,
              help="Mixup alpha (the authors use 1.0 over 200 epochs; 0 is off).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--holdout", type=int, default=2000, show_default=True,
              help="Last training images never trained on (threshold calibration).")
@click.option("--limit", type=int, default=None, help="Train on the first N images only.")
@click.option("--test-limit", type=int, default=None, help="Test on the first N images only.")
@click.option("--device", default="cpu", show_default=True, help="cpu, or cuda.")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--onnx-dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="Weights of the exported ONNX.")
def train_command(data: str, test_data: str | None, out: str, stages: str, width: int,
                  stem_stride: int, pretrain_mode: str, epochs: int, lr: float, nat_epochs: int,
                  nat_lr: float, trim_noise: str, pac_epochs: int, pac_lr: float, arch: str,
                  pac_static: bool, pac_float_weight: float, init: str | None,
                  wbit: int | None, xbit: int | None, first_bits: int, batch: int,
                  weight_decay: float, label_smoothing: float, mixup: float, seed: int,
                  holdout: int, limit: int | None,
                  test_limit: int | None, device: str, threads: int | None,
                  onnx_dtype: str) -> None:
    """Train PACiM's ResNet-18: pretrain, noise-aware training (NAT), PAC fine-tuning.

    \b
    Every stage writes <out>/<stage>.onnx, readable by `pacim accuracy` and
    `pacim simulate --workload`, with the input normalization in its metadata.
    Interrupted? Run the same command again: it resumes from the last epoch.
    \b
    Examples:
      pacim train --out runs/fm --width 32 --stem-stride 2 --epochs 20
      pacim train --data cifar-10-batches-py --out runs/c10 --width 64 --device cuda
      pacim train --out runs/tiny --width 8 --limit 2000 --epochs 1 --stages pretrain
      pacim train --out runs/w4 --init fashion-resnet18-pretrain.onnx --width 32 \
          --stem-stride 2 --stages pretrain --wbit 4 --xbit 4 --epochs 3 --lr 0.01
    """
    try:
        import torch
    except ImportError:
        raise PacimError(f"pacim train needs torch: {INSTALL_HINT}") from None
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise PacimError(f"pacim train writes ONNX and needs onnx: {INSTALL_HINT}") from None
    from ...progress import Progress
    from .loop import TrainConfig, train

    if threads is not None:
        if threads < 1:
            raise PacimError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    cfg = TrainConfig(
        data=data, out=out, test_data=test_data,
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()), width=width,
        stem_stride=stem_stride, pretrain=pretrain_mode, epochs=epochs, lr=lr,
        nat_epochs=nat_epochs, nat_lr=nat_lr, trim_noise=_floats(trim_noise),
        pac_epochs=pac_epochs, pac_lr=pac_lr, arch=arch, pac_static=pac_static,
        pac_float_weight=pac_float_weight, init=init, wbit=wbit, xbit=xbit,
        first_bits=first_bits, batch=batch,
        weight_decay=weight_decay, label_smoothing=label_smoothing, mixup=mixup, seed=seed,
        holdout=holdout, limit=limit, test_limit=test_limit, device=device,
        onnx_dtype=onnx_dtype, command=shlex.join(["pacim", *sys.argv[1:]]))

    def progress(title: str) -> Progress:
        return Progress(title)

    rec = train(cfg, log=lambda s: click.echo(s), progress_factory=progress)
    for name, s in rec["stages"].items():
        click.echo(f"{name}: test top-1 {100 * s.get('test_top1', float('nan')):.2f}% "
                   f"({s['seconds'] / 60:.1f} min) -> {out}/{s['onnx']}")
