"""`pacim train`: the stages, resumable from per-epoch checkpoints, with a JSON log.

Stages, in order (each starts from the previous one's final weights):

- ``pretrain``: from scratch, float or W8A8 QAT with PACT (SGD, cosine learning rate with a
  one-epoch warm-up);
- ``nat``: the authors' noise-aware training, one sub-stage per trim_noise level (25, 50, 75 %),
  ``nat25``, ``nat50``, ``nat75``;
- ``pac``: pacim's fine-tuning with the bit-exact PAC macro in the forward pass (static, or
  dynamic configuration at the arch's thresholds), straight-through gradient.

Files in the output folder: ``<stage>.pt`` (checkpoint after every epoch), ``<stage>.onnx`` (the
stage's model), ``train.json`` (settings, command line, every epoch's loss, train and test top-1
and seconds, and per stage its wall time). Running the same command again resumes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import PacimError
from .data import TensorData, batches, channel_normalization, training_sets
from .model import PacResNet18

STAGES = ("pretrain", "nat", "pac")
# settings that must match to resume a run in the same folder
_RESUME_KEYS = ("data", "width", "stem_stride", "seed", "holdout", "limit", "pretrain", "batch",
                "init", "wbit", "xbit", "first_bits")

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    """Everything `pacim train` needs; recorded in train.json."""

    data: str = "fashion-mnist"
    out: str = "runs/train"
    test_data: str | None = None
    stages: tuple[str, ...] = STAGES
    width: int = 64
    stem_stride: int = 1
    pretrain: str = "qat"  # or float
    epochs: int = 30
    lr: float = 0.05
    nat_epochs: int = 2  # per trim_noise level
    nat_lr: float = 0.001
    trim_noise: tuple[float, ...] = (25.0, 50.0, 75.0)
    pac_epochs: int = 2
    pac_lr: float = 0.001
    arch: str = "pacim_65nm"
    pac_static: bool = False
    pac_float_weight: float = 0.0  # joint loss CE(PAC) + w CE(float) in the pac stage
    init: str | None = None  # start from this pacim-train ONNX (BatchNorm frozen)
    wbit: int | None = None  # None: the arch's macro.wbit
    xbit: int | None = None
    first_bits: int = 8  # the first conv's bits when wbit/xbit are narrower
    batch: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.01
    mixup: float = 0.0
    augment_pad: int | None = None  # default: image size // 8
    flip: bool = True
    seed: int = 0
    holdout: int = 2000
    limit: int | None = None
    test_limit: int | None = None
    device: str = "cpu"
    onnx_dtype: str = "float32"
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def stage_list(self) -> list[tuple[str, str, float, int, float]]:
        """(name, layer mode, trim_noise, epochs, lr) of every (sub-)stage, in order."""
        out = []
        for s in self.stages:
            if s == "pretrain":
                out.append(("pretrain", self.pretrain, 0.0, self.epochs, self.lr))
            elif s == "nat":
                out += [(f"nat{t:g}", "nat", t, self.nat_epochs, self.nat_lr)
                        for t in self.trim_noise]
            elif s == "pac":
                out.append(("pac", "pac", 0.0, self.pac_epochs, self.pac_lr))
        return out


def check_config(c: TrainConfig) -> None:
    """One clear error for settings that cannot work."""
    bad = [s for s in c.stages if s not in STAGES]
    if bad or not c.stages:
        raise PacimError(f"unknown stage(s) {', '.join(bad) or '(none)'}; choose from "
                         f"{', '.join(STAGES)}")
    if list(c.stages) != sorted(c.stages, key=STAGES.index):
        raise PacimError(f"stages run in the order {', '.join(STAGES)}; got {', '.join(c.stages)}")
    if c.pretrain not in ("qat", "float"):
        raise PacimError(f"--pretrain must be qat or float, got {c.pretrain!r}")
    for name, v, lo in (("width", c.width, 1), ("stem-stride", c.stem_stride, 1),
                        ("batch", c.batch, 1), ("epochs", c.epochs, 0),
                        ("nat-epochs", c.nat_epochs, 0), ("pac-epochs", c.pac_epochs, 0)):
        if v < lo:
            raise PacimError(f"--{name} must be >= {lo}, got {v}")
    for name, v in (("wbit", c.wbit), ("xbit", c.xbit), ("first-bits", c.first_bits)):
        if v is not None and not 1 <= v <= 8:
            raise PacimError(f"--{name} must be 1..8, got {v}")
    if not (c.pac_float_weight >= 0 and math.isfinite(c.pac_float_weight)):
        raise PacimError(f"--pac-float-weight must be >= 0, got {c.pac_float_weight}")
    if c.device.startswith("cuda") and not torch.cuda.is_available():
        raise PacimError("--device cuda: torch sees no CUDA device on this machine")


def _initial_model(c: TrainConfig, in_channels: int, classes: int) -> PacResNet18:
    """A fresh network, or the --init model (whose width and stem must match the settings)."""
    if c.init is None:
        return PacResNet18(c.width, in_channels, classes, c.stem_stride)
    from .onnx_init import load_onnx_init

    model, facts = load_onnx_init(c.init)
    want = {"width": c.width, "in_channels": in_channels, "classes": classes,
            "stem_stride": c.stem_stride}
    diff = [f"{k} {facts[k]} (run: {v})" for k, v in want.items() if facts[k] != v]
    if diff:
        raise PacimError(f"--init {c.init}: the model has {', '.join(diff)}; give matching "
                         "--width / --stem-stride and the dataset it was trained on")
    return model


def _macro_config(c: TrainConfig) -> Any:
    """The arch's macro configuration (PAC stage), at --wbit/--xbit when given."""
    from ...arch import load_arch
    from ...workloads.onnx import MacroConfig

    arch = load_arch(c.arch)
    if c.pac_static:
        arch = arch.with_overrides({"pac.dynamic": None})
    cfg = MacroConfig.from_arch(arch)
    if c.wbit is None and c.xbit is None:
        return cfg
    xb, wb = c.xbit or cfg.xbit, c.wbit or cfg.wbit
    dyn = cfg.dynamic if (xb, wb) == (8, 8) else None  # the thresholds are 8b/8b levels
    return MacroConfig(xb, wb, min(cfg.operand, max(xb, wb)), cfg.approx, dyn,
                       cfg.pac_enabled, cfg.first_layer_exact)


def _lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def _optimizer(model: PacResNet18, c: TrainConfig, lr: float) -> torch.optim.SGD:
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1
             or n.endswith("alpha")]  # conv/fc weights and PACT clips (PACT's L2 on alpha)
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": decay, "weight_decay": c.weight_decay},
                            {"params": rest, "weight_decay": 0.0}], lr=lr,
                           momentum=c.momentum, nesterov=True)


def evaluate_torch(model: PacResNet18, d: TensorData, c: TrainConfig, norm: Any
                   ) -> tuple[float, float]:
    """(top-1, mean digital cycles or nan) of the model in its current mode on d."""
    model.eval()
    model.state.cycles.clear()
    right = 0
    with torch.no_grad():
        for x, y in batches(d, 256, norm, gen=None):
            right += int((model(x.to(c.device)).argmax(1).cpu() == y).sum())
    cyc = model.state.cycles
    mean = sum(n * m for n, m in cyc) / sum(n for n, _ in cyc) if cyc else float("nan")
    cyc.clear()
    return right / len(d), mean


def _train_epoch(model: PacResNet18, opt: torch.optim.SGD, d: TensorData, c: TrainConfig,
                 norm: Any, gen: torch.Generator, step0: int, steps: int, lr: float,
                 warmup: int, progress: Callable[[int, int, str], None] | None
                 ) -> tuple[float, float, int]:
    model.train()
    pad = c.augment_pad if c.augment_pad is not None else d.hw[0] // 8
    tot_loss, right, seen, step = 0.0, 0, 0, step0
    for x, y in batches(d, c.batch, norm, gen=gen, pad=pad, flip=c.flip):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr, warmup)
        x, y = x.to(c.device), y.to(c.device)
        if c.mixup > 0:
            lam = float(torch.distributions.Beta(c.mixup, c.mixup).sample())
            perm = torch.randperm(x.shape[0], generator=gen).to(c.device)
            out = model(lam * x + (1 - lam) * x[perm])
            loss = lam * F.cross_entropy(out, y, label_smoothing=c.label_smoothing) + (
                1 - lam) * F.cross_entropy(out, y[perm], label_smoothing=c.label_smoothing)
        else:
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=c.label_smoothing)
            if c.pac_float_weight > 0 and model.state.mode == "pac":
                model.state.mode = "float"  # the same network in float: keep its accuracy
                try:
                    loss = loss + c.pac_float_weight * F.cross_entropy(
                        model(x), y, label_smoothing=c.label_smoothing)
                finally:
                    model.state.mode = "pac"
        if not torch.isfinite(loss):
            raise PacimError(f"training diverged (loss {float(loss)}); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        b = int(y.shape[0])
        tot_loss += float(loss.detach()) * b
        right += int((out.argmax(1) == y).sum())
        seen += b
        step += 1
        if progress is not None:
            progress(seen, len(d), f"loss {tot_loss / seen:.3f} acc {100 * right / seen:.1f}%")
    return tot_loss / max(seen, 1), right / max(seen, 1), step


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    torch.save(obj, tmp)
    tmp.replace(path)


def _write_json(rec: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(path)


def _code_version() -> str:
    """pacim's version, and the git commit of the checkout it runs from (when there is one)."""
    import subprocess
    from importlib.metadata import version

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if sha and dirty:
            sha += " + uncommitted changes to pacim/accuracy/train"
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"pacim {version('pacim')}" + (f" (git {sha})" if sha else "")


def _record(out: Path, c: TrainConfig) -> dict[str, Any]:
    p = out / "train.json"
    if not p.is_file():
        return {"config": asdict(c), "command": c.command, "epochs": [], "stages": {},
                "code": [_code_version()], "torch": torch.__version__}
    rec = json.loads(p.read_text())
    old = rec.get("config", {})
    default = asdict(TrainConfig())  # records older than a setting ran at its default
    diff = [k for k in _RESUME_KEYS if old.get(k, default[k]) != asdict(c).get(k)]
    if diff:
        raise PacimError(f"{out} holds a run with other settings ({', '.join(diff)}); give "
                         "another --out or delete it")
    rec.setdefault("commands", [rec.get("command")]).append(c.command)
    rec.setdefault("code", []).append(_code_version())
    rec["config"] = asdict(c)
    return rec


def train(c: TrainConfig, log: Log = print,
          progress_factory: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run (or resume) the stages; returns the train.json record."""
    from ..metadata import NORM_KEY
    from .export import export_onnx

    check_config(c)
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = _record(out, c)
    train_d, test_d, hold = training_sets(c.data, c.test_data, holdout=c.holdout,
                                          limit=c.limit, test_limit=c.test_limit)
    norm = channel_normalization(train_d)
    classes = int(max(int(train_d.y.max()), int(test_d.y.max())) + 1)
    rec.update(normalization=norm.to_dict(), train_images=len(train_d),
               test_images=len(test_d), holdout=hold, classes=classes)
    torch.manual_seed(c.seed)
    model = _initial_model(c, int(train_d.x.shape[1]), classes).to(c.device)
    pac_cfg = _macro_config(c)
    if min(pac_cfg.xbit, pac_cfg.wbit) < c.first_bits:
        model.state.first_bits = c.first_bits
    prev: Path | None = None
    for si, (name, mode, trim, epochs, lr) in enumerate(c.stage_list()):
        ck = out / f"{name}.pt"
        state = torch.load(ck, weights_only=False) if ck.is_file() else None
        if state is None and prev is not None:
            model.load_state_dict(torch.load(prev, weights_only=False)["model"])
        model.set_mode(mode, trim_noise=trim, pac=pac_cfg)
        opt = _optimizer(model, c, lr)
        start = 0
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start = state["epoch"]
        n_batches = math.ceil(len(train_d) / c.batch)
        warmup = n_batches if name == "pretrain" and epochs > 2 else 0
        srec = rec["stages"].setdefault(name, {"mode": mode, "trim_noise": trim,
                                               "epochs": epochs, "lr": lr, "seconds": 0.0})
        for ep in range(start, epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(c.seed * 1_000_003 + si * 1009 + ep)
            torch.manual_seed(c.seed * 7919 + si * 101 + ep)  # NAT noise, mixup
            prog = progress_factory(f"{name} {ep + 1}/{epochs}") if progress_factory else None
            try:
                loss, tr_acc, _ = _train_epoch(model, opt, train_d, c, norm, gen,
                                               ep * n_batches, epochs * n_batches, lr, warmup,
                                               prog)
            finally:
                if prog is not None:
                    prog.close()
            te_acc, cyc = evaluate_torch(model, test_d, c, norm)
            dt = time.perf_counter() - t0
            e = {"stage": name, "epoch": ep + 1, "loss": loss, "train_top1": tr_acc,
                 "test_top1": te_acc, "seconds": dt, "lr": lr}
            if cyc == cyc:
                e["digital_cycles_mean"] = cyc
            if mode == "pac" and c.pac_float_weight > 0:
                model.set_mode("float")
                e["test_top1_float"] = evaluate_torch(model, test_d, c, norm)[0]
                model.set_mode(mode, pac=pac_cfg)
            rec["epochs"].append(e)
            srec["seconds"] += dt
            srec["test_top1"] = te_acc
            _save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": ep + 1}, ck)
            _write_json(rec, out / "train.json")
            log(f"{name} epoch {ep + 1}/{epochs}: loss {loss:.4f}  train {100 * tr_acc:.2f}%  "
                f"test {100 * te_acc:.2f}%" + (f"  cycles {cyc:.2f}" if cyc == cyc else "")
                + (f"  float {100 * e['test_top1_float']:.2f}%" if "test_top1_float" in e
                   else "") + f"  {dt:.0f} s")
        if epochs == 0 and state is None and prev is None:
            raise PacimError(f"stage {name} has 0 epochs and nothing to start from")
        if not ck.is_file():  # a 0-epoch stage passes the previous weights on
            _save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 0}, ck)
        onnx_path = out / f"{name}.onnx"
        if not onnx_path.is_file() or onnx_path.stat().st_mtime < ck.stat().st_mtime:
            meta = {NORM_KEY: norm.to_dict(), "pacim.dataset": c.data,
                    "pacim.classes": train_d.classes or list(range(classes)),
                    "pacim.holdout": f"train[{hold['start']}:{hold['stop']}]",
                    "pacim.training": {"stage": name, "width": c.width,
                                       "stem_stride": c.stem_stride, "seed": c.seed,
                                       "wbit": pac_cfg.wbit, "xbit": pac_cfg.xbit,
                                       "first_bits": model.state.first_bits or pac_cfg.wbit,
                                       "command": c.command}}
            export_onnx(model.cpu(), onnx_path, train_d.hw, dtype=c.onnx_dtype, metadata=meta)
            model.to(c.device)
        srec["onnx"] = onnx_path.name
        _write_json(rec, out / "train.json")
        prev = ck
    rec["seconds_total"] = sum(s["seconds"] for s in rec["stages"].values())
    _write_json(rec, out / "train.json")
    return rec
