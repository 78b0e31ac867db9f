"""Training (torch extra): the torch PAC layer against the numpy macro, its straight-through
gradient, the ONNX export, and one short training run."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from pacim.accuracy.train.pac import pac_conv2d, pac_linear  # noqa: E402
from pacim.accuracy.train.quant import fq_conv2d, fq_linear  # noqa: E402
from pacim.functional import conv2d, linear  # noqa: E402
from pacim.macro.core import DEFAULT_THRESHOLDS  # noqa: E402
from pacim.workloads.onnx import MacroConfig  # noqa: E402

RTOL = 1e-6


def _close(out: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=RTOL * np.abs(ref).max())


def _configs():
    for bits in range(2, 9):
        for op in sorted({1, max(1, bits // 2), bits - 1, bits} - {0}):
            for approx in ("pac", "truncate", "expected"):
                yield bits, op, approx, None
    for approx in ("pac", "truncate", "expected"):
        for dyn in (DEFAULT_THRESHOLDS, (2000.0, 5000.0, 9000.0)):
            yield 8, 4, approx, dyn


@pytest.mark.parametrize("bits,operand,approx,dynamic", list(_configs()))
def test_torch_pac_conv_equals_functional(bits, operand, approx, dynamic):
    rng = np.random.default_rng(bits * 100 + operand)
    envelope = np.geomspace(0.02, 1.0, 9)[None, None, None, :]  # windows from quiet to busy
    x = np.maximum(rng.standard_normal((3, 6, 9, 9)), 0) * 3 * envelope - 0.01  # batch 3
    w = rng.standard_normal((5, 6, 3, 3))
    b = rng.standard_normal(5)
    cfg = MacroConfig(bits, bits, operand, approx, dynamic)
    for stride, pad in ((1, 1), (2, 1), (2, 0)):
        ref, st = conv2d(x, w, b, stride=stride, padding=pad, xbit=bits, wbit=bits,
                         operand=operand, approx=approx, dynamic=dynamic, return_stats=True)
        out = pac_conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride,
                         padding=pad, cfg=cfg, per_sample=False)
        _close(out.y.numpy(), ref)
        assert float(out.cycles.double().mean()) == pytest.approx(st.digital_cycles_mean)
        if dynamic == (2000.0, 5000.0, 9000.0) and pad == 1 and stride == 1:
            assert set(np.unique(out.cycles.numpy())) == {10, 13, 15, 16}  # every level


@pytest.mark.parametrize("bits,operand", [(b, o) for b in range(2, 9) for o in (1, b // 2, b)
                                          if o >= 1])
def test_torch_pac_linear_equals_functional(bits, operand):
    rng = np.random.default_rng(bits)
    x, w, b = rng.standard_normal((4, 70)), rng.standard_normal((9, 70)), rng.standard_normal(9)
    for approx in ("pac", "truncate", "expected"):
        ref = linear(x, w, b, xbit=bits, wbit=bits, operand=operand, approx=approx)
        out = pac_linear(torch.tensor(x), torch.tensor(w), torch.tensor(b),
                         cfg=MacroConfig(bits, bits, operand, approx), per_sample=False)
        _close(out.y.numpy(), ref)


def test_per_sample_equals_functional_image_by_image():
    """The executor's convention: each image quantized on its own (results batch-independent)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 5, 8, 8)) * rng.uniform(0.2, 3, (4, 1, 1, 1))
    w = rng.standard_normal((6, 5, 3, 3))
    cfg = MacroConfig(dynamic=DEFAULT_THRESHOLDS)
    out = pac_conv2d(torch.tensor(x), torch.tensor(w), stride=1, padding=1, cfg=cfg).y.numpy()
    for i in range(4):
        ref = conv2d(x[i:i + 1], w, stride=1, padding=1, dynamic=DEFAULT_THRESHOLDS)
        _close(out[i:i + 1], ref)
    xl, wl = rng.standard_normal((3, 40)), rng.standard_normal((7, 40))
    out = pac_linear(torch.tensor(xl), torch.tensor(wl)).y.numpy()
    for i in range(3):
        _close(out[i:i + 1], linear(xl[i:i + 1], wl))


def test_pac_gradient_is_straight_through():
    rng = np.random.default_rng(1)
    cfg = MacroConfig(dynamic=DEFAULT_THRESHOLDS)
    g = torch.tensor(rng.standard_normal((2, 4, 6, 6)))
    grads = []
    for fn in (lambda x, w: pac_conv2d(x, w, stride=1, padding=1, cfg=cfg).y,
               lambda x, w: fq_conv2d(x, w, None, 1, 1, 8, 8)):
        x = torch.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
        w = torch.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
        with torch.no_grad():  # same inputs for both functions
            x.copy_(torch.tensor(np.random.default_rng(2).standard_normal((2, 3, 6, 6))))
            w.copy_(torch.tensor(np.random.default_rng(3).standard_normal((4, 3, 3, 3))))
        y = fn(x, w)
        (y * g).sum().backward()
        grads.append((x.grad.clone(), w.grad.clone(), y.detach()))
    (gx_pac, gw_pac, y_pac), (gx_ste, gw_ste, y_ste) = grads
    assert torch.equal(gx_pac, gx_ste) and torch.equal(gw_pac, gw_ste)
    assert not torch.equal(y_pac, y_ste)  # the forward is PAC's, not the fake-quantized conv's
    # the fake-quantized conv's own gradient is the float conv's at the quantized point
    x = torch.tensor(rng.standard_normal((2, 5)), requires_grad=True)
    w = torch.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    pac_linear(x, w).y.sum().backward()
    gx = x.grad.clone()
    x.grad = None
    fq_linear(x, w, None, 8, 8).sum().backward()
    assert torch.equal(gx, x.grad)


def _net(width=4, stem=1):
    from pacim.accuracy.train.model import PacResNet18

    torch.manual_seed(0)
    m = PacResNet18(width, 1, 10, stem)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial statistics
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.3, 0.3)
    return m.eval()


def test_model_in_pac_mode_equals_onnx_executor(tmp_path):
    """The whole network, torch pac mode vs pacim's ONNX executor, dynamic and static."""
    from pacim.accuracy.train.export import export_onnx
    from pacim.arch import load_arch
    from pacim.workloads.onnx import OnnxNet

    m = _net(4, 2)
    path = export_onnx(m, tmp_path / "m.onnx", (16, 16))
    net = OnnxNet.load(path)
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    md = m.double()
    arch = load_arch("pacim_65nm")
    for a in (arch, arch.with_overrides({"pac.dynamic": None})):
        md.set_mode("pac", pac=MacroConfig.from_arch(a))
        with torch.no_grad():
            ref = md(x).numpy()
        _close(net.run(x.numpy(), "pac", config=a), ref)
    md.set_mode("float")
    with torch.no_grad():
        _close(net.run(x.numpy(), "float"), md(x).numpy())


def _learnable_idx(folder, n_train=2600, n_test=300):
    """A small 10-class IDX dataset whose class is a bright bar's position (when Fashion-MNIST
    is not fetched)."""
    from pacim.accuracy.idx import write_idx

    rng = np.random.default_rng(0)
    folder.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 + 2 * c:4 + 2 * c, 4:24] += 150
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x.astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    return str(folder)


def test_train_one_epoch_width8_loss_falls_and_export_rereads(tmp_path):
    from pacim.accuracy.fetch import cached_fashion_mnist
    from pacim.accuracy.metadata import model_normalization
    from pacim.accuracy.train.loop import TrainConfig, evaluate_torch, train
    from pacim.accuracy.train.model import PacResNet18
    from pacim.workloads.onnx import OnnxNet

    data = "fashion-mnist" if cached_fashion_mnist() else _learnable_idx(tmp_path / "idx")
    cfg = TrainConfig(data=data, out=str(tmp_path / "run"), stages=("pretrain",), width=8,
                      epochs=1, lr=0.05, limit=2000, test_limit=300, holdout=500)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # oversubscribed OpenMP threads slow a shared machine down badly
    try:
        t0 = time.perf_counter()
        rec = train(cfg, log=lambda s: None)
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    print(f"\n1 epoch, 2000 images, width 8 on {data}: {dt:.1f} s, test top-1 "
          f"{100 * rec['stages']['pretrain']['test_top1']:.1f}%")
    assert dt < 120
    assert rec["train_images"] == 2000 and len(rec["epochs"]) == 1
    # the loss falls: the trained model's test loss is below the untrained one's
    from pacim.accuracy.train.data import training_sets

    _, test, _ = training_sets(data, None, holdout=500, limit=10, test_limit=300)
    norm = model_normalization(tmp_path / "run" / "pretrain.onnx")
    assert norm is not None and norm.to_dict() == rec["normalization"]
    trained = PacResNet18(8, 1, 10)
    trained.load_state_dict(torch.load(tmp_path / "run" / "pretrain.pt")["model"])
    torch.manual_seed(0)
    fresh = PacResNet18(8, 1, 10)

    def test_loss(m):
        from pacim.accuracy.train.data import batches

        m.eval()
        x, y = next(batches(test, 300, norm, gen=None))
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(m(x), y)), m(x).double().numpy(), x
    before, _, _ = test_loss(fresh)
    trained.set_mode("qat")
    after, _, _ = test_loss(trained)
    assert after < before - 0.05, (before, after)
    assert evaluate_torch(trained, test, cfg, norm)[0] > 0.15
    # the exported ONNX re-reads with the same logits (float mode)
    trained.set_mode("float")
    _, logits, x = test_loss(trained)
    out = OnnxNet.load(tmp_path / "run" / "pretrain.onnx").run(x.double().numpy(), "float")
    np.testing.assert_allclose(out, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
    log = json.loads((tmp_path / "run" / "train.json").read_text())
    assert set(log["epochs"][0]) >= {"loss", "train_top1", "test_top1", "seconds"}
    # running the same command again resumes: nothing left to do, same record
    again = train(cfg, log=lambda s: None)
    assert len(again["epochs"]) == 1 and len(again["commands"]) == 2


def test_float16_export_is_valid_and_close(tmp_path):
    from pacim.accuracy.train.export import export_onnx
    from pacim.workloads.onnx import OnnxNet

    m = _net(4, 2)
    p16 = export_onnx(m, tmp_path / "h.onnx", (16, 16), dtype="float16")
    p32 = export_onnx(m, tmp_path / "f.onnx", (16, 16))
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    model = onnx.load(str(p16))
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 16))
    a, b = OnnxNet.load(p16).run(x, "float"), OnnxNet.load(p32).run(x, "float")
    np.testing.assert_allclose(a, b, rtol=0, atol=5e-3 * np.abs(b).max())


def test_train_command_errors(tmp_path):
    from click.testing import CliRunner

    from pacim.cli import main

    base = ["train", "--out", str(tmp_path / "r"), "--width", "4", "--limit", "10"]
    for extra, msg in ((["--stages", "pretrain,foo"], "unknown stage(s) foo"),
                       (["--stages", "pac,pretrain"], "stages run in the order"),
                       (["--width", "0"], "--width must be >= 1"),
                       (["--wbit", "9"], "--wbit must be 1..8"),
                       (["--pac-float-weight", "-1"], "--pac-float-weight must be >= 0"),
                       (["--init", str(tmp_path / "no.onnx")], "no such model file"),
                       (["--device", "cuda:7"], None),
                       (["--data", str(tmp_path / "none")], "no such file or directory")):
        r = CliRunner().invoke(main, base + extra)
        if msg is None and torch.cuda.is_available():
            continue
        assert r.exit_code == 2, r.output
        assert (msg or "torch sees no CUDA device") in r.output


def test_init_from_onnx_equals_the_exported_model(tmp_path):
    """--init: the imported network computes what the file computes (float and qat), its
    BatchNorms stay frozen in training mode, and bad files get one clear error."""
    from pacim.accuracy.train.export import export_onnx
    from pacim.accuracy.train.onnx_init import load_onnx_init
    from pacim.errors import PacimError

    m = _net(4, 2)
    path = export_onnx(m, tmp_path / "m.onnx", (16, 16))
    n, facts = load_onnx_init(path)
    assert facts == {"width": 4, "in_channels": 1, "classes": 10, "stem_stride": 2}
    x = torch.randn(3, 1, 16, 16)
    n.train()  # frozen BatchNorm: training mode must not switch to batch statistics
    assert not any(b.training for b in n.modules() if isinstance(b, torch.nn.BatchNorm2d))
    for mode in ("float", "qat"):
        m.set_mode(mode)
        n.set_mode(mode)
        with torch.no_grad():
            a, b = m(x), n(x)
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    for bad, msg in ((tmp_path / "none.onnx", "no such model file"),
                     (tmp_path / "junk.onnx", "cannot read")):
        with pytest.raises(PacimError, match=msg):
            load_onnx_init(bad)


def test_low_bit_qat_first_conv_stays_8_bits(tmp_path):
    """--wbit/--xbit: QAT at 4 bits with the first conv at --first-bits 8, recorded in the ONNX
    metadata; the joint float + PAC loss of the pac stage runs and logs the float top-1."""
    from pacim.accuracy.metadata import read_metadata
    from pacim.accuracy.train.loop import TrainConfig, train
    from pacim.accuracy.train.model import PacResNet18

    data = _learnable_idx(tmp_path / "idx", n_train=700, n_test=100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig(data=data, out=str(tmp_path / "w4"), stages=("pretrain",), width=4,
                          stem_stride=2, epochs=1, wbit=4, xbit=4, limit=600, holdout=100)
        train(cfg, log=lambda s: None)
        meta = json.loads(read_metadata(tmp_path / "w4" / "pretrain.onnx")["pacim.training"])
        assert (meta["wbit"], meta["xbit"], meta["first_bits"]) == (4, 4, 8)
        # fine-tuning from that file: the pac stage with the joint loss
        cfg2 = TrainConfig(data=data, out=str(tmp_path / "j"), stages=("pac",), width=4,
                           stem_stride=2, pac_epochs=1, pac_float_weight=1.0, limit=600,
                           holdout=100, init=str(tmp_path / "w4" / "pretrain.onnx"))
        rec = train(cfg2, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    assert 0.0 <= rec["epochs"][-1]["test_top1_float"] <= 1.0
    # the first conv really runs at 8 bits: its qat output differs from a 4-bit first conv
    net = PacResNet18(4, 1, 10, 2)
    net.set_mode("qat", pac=MacroConfig(4, 4, 4))
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        y4 = net.conv1(x)
        net.state.first_bits = 8
        y8 = net.conv1(x)
    assert not torch.equal(y4, y8)
    with pytest.raises(Exception, match="must match|width"):
        train(TrainConfig(data=data, out=str(tmp_path / "k"), stages=("pac",), width=8,
                          stem_stride=2, limit=600, holdout=100,
                          init=str(tmp_path / "w4" / "pretrain.onnx")), log=lambda s: None)


def test_one_bit_weights_are_binary_and_exact_on_the_macro(tmp_path):
    """1-bit layers train and export sign(w) * mean|w|: two values per tensor, which the macro's
    offset-binary 1-bit code holds exactly, so the executor at 1 bit equals torch's qat."""
    from pacim.accuracy.train.export import export_onnx
    from pacim.workloads.onnx import OnnxNet

    m = _net(4, 2).double()
    cfg = MacroConfig(1, 1, 1)
    m.set_mode("qat", pac=cfg)
    m.state.first_bits = 8
    path = export_onnx(m, tmp_path / "b.onnx", (16, 16))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    weights = {k: v for k, v in inits.items() if k.rsplit("_", 1)[0].endswith(".weight")}
    first = [k for k in weights if k.startswith("conv1.")]
    assert len(first) == 1 and np.unique(weights[first[0]]).size > 2  # the 8-bit first conv
    assert all(np.unique(v).size == 2 for k, v in weights.items() if k not in first)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = m(x).numpy()
    net = OnnxNet.load(path)
    # the executor runs every layer at 1 bit except the first, run at 8 bits (pacim's float
    # first layer equals 8-bit fake quantization only approximately, so compare the rest)
    got = net.run(x.numpy(), "exact", config=cfg, first_layer="float")
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.9
