"""The accuracy commands: `pacim accuracy` and `pacim data fetch`.

`pacim train` lives in `pacim.accuracy.train.cli`, `pacim calibrate-thresholds` in
`pacim.accuracy.thresholds`; all are registered lazily in `pacim.cli.LAZY_COMMANDS`.
"""

from __future__ import annotations

import json

import click

from ..arch import load_arch
from .evaluate import evaluate, parse_modes, result_text
from .norm import Normalization


@click.command("accuracy")
@click.option("--model", "model_path", required=True, metavar="NET.onnx|NAME",
              help="Trained network in ONNX (needs the onnx extra), or a shipped model: "
                   "fashion-resnet18 (and its other stages: fashion-resnet18-pretrain, -nat, "
                   "-pac-only, -w4a4, -w1a1).")
@click.option("--data", "data_path", required=True, metavar="NAME|DIR|FILE",
              help="fashion-mnist (after `pacim data fetch`), an IDX folder or file, CIFAR "
                   "batch file or directory, ImageFolder tree, or .npz.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test",
              show_default=True, help="Split of datasets that hold both.")
@click.option("--arch", "arch_path", required=True, help="Architecture YAML (or shipped name).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images only.")
@click.option("--modes", default="float,exact,pac", show_default=True,
              help="Comma-separated modes: float, exact, pac.")
@click.option("--batch", type=int, default=32, show_default=True, help="Images per batch.")
@click.option("--mean", default=None, metavar="R,G,B", help="Per-channel mean (after /255).")
@click.option("--std", default=None, metavar="R,G,B", help="Per-channel std (after /255).")
@click.option("--norm", default=None, metavar="PRESET|FILE",
              help="Normalization preset (cifar10, cifar100, imagenet, none) or a YAML file "
                   "with mean and std. Default: the model's metadata, else none.")
@click.option("--first-layer", type=click.Choice(["arch", "float", "exact", "pac"]),
              default="arch", show_default=True,
              help="Mode of the first Conv/Gemm: arch follows pac.first_layer_exact.")
@click.option("--hw-images", type=int, default=1, show_default=True,
              help="Images simulated for the hardware report (0: none).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override an arch field, e.g. --set pac.operand=3 (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the result as JSON.")
def accuracy_command(model_path: str, data_path: str, split: str, arch_path: str,
                     limit: int | None,
                     modes: str, batch: int, mean: str | None, std: str | None,
                     norm: str | None, first_layer: str, hw_images: int, sets: tuple[str, ...],
                     json_path: str | None) -> None:
    """Top-1 accuracy of an ONNX network per mode (float, exact, PAC) and its hardware cost.

    \b
    Examples:
      pacim accuracy --model fashion-resnet18 --data fashion-mnist --arch pacim_65nm
      pacim accuracy --model resnet18.onnx --data cifar-10-batches-py \\
          --arch arch_configs/pacim_65nm.yaml --norm cifar10 --limit 1000
      pacim accuracy --model net.onnx --data images/ --arch pacim_65nm \\
          --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --modes float,pac --json acc.json
    """
    from ..arch import parse_assignment
    from ..progress import Progress
    from ..report import check_writable, json_safe, write_text

    arch = load_arch(arch_path, dict(parse_assignment(s) for s in sets))
    check_writable(json_path)
    given = (mean, std, norm) != (None, None, None)
    normalization = Normalization.parse(mean, std, norm) if given else None
    prog = Progress("accuracy")

    def show(done: int, total: int, running: dict[str, float]) -> None:
        prog.extra = " ".join(f"{m} {100 * a:.1f}%" for m, a in running.items()) + " "
        prog(done, total, "")

    try:
        res = evaluate(model_path, data_path, arch, limit=limit, modes=parse_modes(modes),
                       batch=batch, norm=normalization, first_layer=first_layer,
                       hw_images=hw_images, progress=show, split=split)
    finally:
        prog.close()
    click.echo(result_text(res))
    if json_path:
        write_text(json_path, json.dumps(json_safe(res), indent=2) + "\n")


@click.group("data")
def data_group() -> None:
    """Datasets: fetch and cache them (~/.cache/pacim, or $PACIM_CACHE)."""


@data_group.command("fetch")
@click.argument("name", type=click.Choice(["fashion-mnist"]))
@click.option("--from", "source", default=None, metavar="DIR|FILE.deb",
              help="Take the four idx(.gz) files from this folder, or from a .deb of "
                   "dataset-fashion-mnist, instead of apt-get.")
@click.option("--force", is_flag=True, help="Fetch again even when cached.")
def data_fetch(name: str, source: str | None, force: bool) -> None:
    """Fetch a dataset, check its SHA-256 and cache it.

    \b
    fashion-mnist: Debian's package dataset-fashion-mnist (30.9 MB .deb, MIT) via
    `apt-get download`; only the four idx files are extracted and kept.
    \b
    Examples:
      pacim data fetch fashion-mnist
      pacim data fetch fashion-mnist --from /usr/share/datasets/fashion-mnist
    """
    from .datasets import load_dataset
    from .fetch import fetch_fashion_mnist

    d = fetch_fashion_mnist(source, force=force)
    sizes = {s: len(load_dataset(name, split=s)) for s in ("train", "test")}
    click.echo(f"{name}: {sizes['train']} training and {sizes['test']} test images, "
               f"SHA-256 verified, in {d}")
