"""The bad-input campaign of issue 15, one test per finding: the installed command line exits 2
with one line `error: ...` on stderr, no traceback and no partial file; bugs keep theirs."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pacim.cli import main
from pacim.cli.main import guarded, user_error_message
from pacim.errors import PacimError

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--arch", "pacim_65nm", "--workload", "resnet18-cifar", "--no-data", "-q"]


def pacim(*args: str, cwd: Path, stdout: object = subprocess.PIPE, timeout: float = 120
          ) -> subprocess.CompletedProcess[str]:
    """`python -m pacim ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pacim", *args], cwd=cwd, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def one_error_line(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one `error: ...` line on stderr naming every needle, no traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --- arch values: finite, positive, named -------------------------------------------------
@pytest.mark.parametrize("setting,needles", [
    ("technology.freq_mhz=.inf", ["technology.freq_mhz", "not a finite number"]),
    ("energy.full_adder.value=.inf", ["energy.full_adder.value", "not a finite number"]),
    ("technology.vdd=.nan", ["technology.vdd", "not a finite number"]),
    ("energy.pac_op.value=0", ["energy.pac_op.value", "greater than or equal"]),
    ("memory.main.bus_bits=0", ["memory.main.bus_bits", "greater than 0"]),
    ("pac.engine_ops_per_cycle=1e-300", ["pac.engine_ops_per_cycle"]),
    ("technology.vdd=0.5000001", ["technology", "vdd too close to vth"]),
    ("technology.node_nm=1e-300", ["technology.node_nm", "greater than or equal to 0.1",
                                   "got '1e-300'"]),
    # the area table: every entry finite; unit areas > 0, the periphery overhead >= 0
    ("area.full_adder.value=.inf", ["area.full_adder.value", "not a finite number"]),
    ("area.node_nm=.nan", ["area.node_nm", "not a finite number"]),
    ("area.bitcell.value=0", ["area.bitcell.value", "greater than or equal"]),
    ("area.buffers.global_buffer.value=-3", ["area.buffers.global_buffer.value", "got -3"]),
    ("area.bank_scale.value=0", ["area.bank_scale.value", "greater than or equal to 0.001"]),
    ("area.periphery_overhead.value=-1", ["area.periphery_overhead.value", "greater than or "
                                                                           "equal to 0"]),
    ("area.pac_unit.value=1e300", ["area.pac_unit.value", "less than or equal"]),
])
def test_bad_arch_values_one_line(tmp_path: Path, setting: str, needles: list[str]) -> None:
    one_error_line(pacim("simulate", *FAST, "--set", setting, cwd=tmp_path), *needles)


def test_a_zero_periphery_overhead_is_valid(tmp_path: Path) -> None:
    """0 is a real overhead (Jia's table has it); the area stays finite and positive."""
    r = pacim("simulate", *FAST, "--set", "area.periphery_overhead.value=0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    area = float(r.stdout.split(" area ")[1].split(" mm2")[0])
    assert 0 < area < float("inf")


def test_non_utf8_arch_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "chip.yaml").write_bytes(b"\xff\xfe name: x\n")
    r = pacim("simulate", "--arch", "chip.yaml", "--workload", "resnet18", cwd=tmp_path)
    one_error_line(r, "chip.yaml", "not a UTF-8 text file")


def test_seed_must_be_non_negative(tmp_path: Path) -> None:
    one_error_line(pacim("simulate", *FAST, "--seed", "-1", cwd=tmp_path), "--seed")
    r = pacim("sweep", *FAST[:-1], "--grid", "pac.operand=2,3", "--out", "s.jsonl",
              "--seed", "-1", cwd=tmp_path)
    one_error_line(r, "--seed")
    assert not (tmp_path / "s.jsonl").exists()


def test_empty_onnx_is_not_a_valid_model(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    (tmp_path / "net.onnx").write_bytes(b"")
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x07")  # parses as a ModelProto with no graph
    for name in ("net.onnx", "cut.onnx"):
        r = pacim("simulate", "--arch", "pacim_65nm", "--workload", name, "--no-data",
                  cwd=tmp_path)
        one_error_line(r, name, "not a valid")


def test_usage_errors_have_the_same_prefix(tmp_path: Path) -> None:
    line = one_error_line(pacim("simulate", *FAST, "--bogus", cwd=tmp_path), "--bogus")
    assert "pacim simulate --help" in line
    assert "Error:" not in pacim("simulate", cwd=tmp_path).stderr


# --- outputs: checked before the run, writes checked after it ------------------------------
@pytest.mark.parametrize("option", ["--trace", "--json", "--csv", "--plot"])
def test_output_to_a_full_disk_is_one_line(tmp_path: Path, option: str) -> None:
    one_error_line(pacim("simulate", *FAST, option, "/dev/full", cwd=tmp_path),
                   f"{option} /dev/full", "No space left on device")


def test_stdout_to_a_full_disk(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        r = pacim("simulate", *FAST, cwd=tmp_path, stdout=full)
    one_error_line(r, "cannot write to standard output", "No space left on device")


def test_outputs_are_validated_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    import pacim.pipeline

    def must_not_run(*a: object, **k: object) -> None:
        raise AssertionError("the simulation ran before the outputs were checked")

    monkeypatch.setattr(pacim.pipeline, "simulate", must_not_run)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for extra, needles in [
        (["--plot", "o.xyz", "--json", "o.json"], ["--plot o.xyz", "unknown image format"]),
        (["--json", "x.json", "--csv", "x.json"], ["--csv x.json", "same file as --json"]),
        (["--trace", "nodir/t.csv"], ["--trace nodir/t.csv", "does not exist"]),
        (["--csv", "."], ["--csv", "is a directory"]),  # click checks this one
    ]:
        r = runner.invoke(main, ["simulate", *FAST, *extra])
        assert r.exit_code == 2, r.output
        line = r.output.strip()
        assert line.startswith("error: ") and "\n" not in line
        for n in needles:
            assert n in line, (n, line)
    assert sorted(os.listdir(tmp_path)) == []  # nothing written, nothing partial


def test_outputs_written_and_paths_returned(tmp_path: Path) -> None:
    r = pacim("simulate", *FAST, "--json", "r.json", "--csv", "l.csv", "--plot", "e.svg",
              "--trace", "t.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["workload"] == "resnet18-cifar"
    assert (tmp_path / "e.svg").read_text().lstrip().startswith("<?xml")
    assert sorted(os.listdir(tmp_path)) == ["e.svg", "l.csv", "r.json", "t.csv"]  # no temp


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    from pacim.report import write_text

    out = tmp_path / "r.json"
    out.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(PacimError, match=r"--json .*r.json: cannot write: No space left"):
        write_text(out, "new\n", "--json")
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["r.json"]


# --- `pacim plot` ---------------------------------------------------------------------------
def _records(tmp_path: Path) -> Path:
    recs = [{"key": str(i), "status": "ok", "workload": "w", "arch": "a", "latency_s": x,
             "energy_pj": 10.0 + i, "overrides": {"pac.operand": i}, "pac.operand": i}
            for i, x in enumerate([-1.0, 0.0, 2.0, 3.0])]
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def test_plot_errors(tmp_path: Path) -> None:
    src = str(_records(tmp_path))
    one_error_line(pacim("plot", src, "--color", "nosuch", "-o", "p.png", cwd=tmp_path),
                   "--color nosuch", "no point has this field")
    one_error_line(pacim("plot", src, "-o", "p.xyz", cwd=tmp_path), "-o p.xyz")
    one_error_line(pacim("plot", src, "-o", "/dev/full", cwd=tmp_path), "-o /dev/full")
    r = pacim("plot", src, "--x", "latency_s", "--logx", "-o", "p.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 points" in r.stdout and "2 of 4 points with latency_s <= 0 left off" in r.stdout
    neg = tmp_path / "neg.jsonl"
    neg.write_text("".join(ln.replace('"latency_s": 2.0', '"latency_s": -2.0')
                           .replace('"latency_s": 3.0', '"latency_s": -3.0') + "\n"
                           for ln in Path(src).read_text().splitlines()))
    one_error_line(pacim("plot", str(neg), "--logx", "-o", "q.png", cwd=tmp_path),
                   "log axis shows values > 0 only", "all 4 points have latency_s <= 0")
    assert not (tmp_path / "q.png").exists()


# --- the boundary itself ----------------------------------------------------------------------
@pytest.mark.parametrize("exc,text", [
    (PacimError("bad thing"), "bad thing"),
    (MemoryError("Unable to allocate 1.00 TiB"), "out of memory: Unable to allocate 1.00 TiB"),
    (FileNotFoundError(2, "No such file or directory", "x.npz"), "x.npz: No such file"),
    (zipfile.BadZipFile("File is not a zip file"), "not a valid or complete zip/.npz"),
    (pickle.UnpicklingError("invalid load key"), "not a valid pickle"),
    (EOFError("No data left in file"), "unexpected end of file"),
    (ValueError("two\nlines"), "two lines"),
])
def test_user_errors_are_one_line(exc: BaseException, text: str, capsys: pytest.CaptureFixture
                                  ) -> None:
    def boom() -> None:
        raise exc

    assert guarded(boom) == 2
    err = capsys.readouterr().err
    assert err == f"error: {user_error_message(exc)}\n" and text in err


def test_interrupt_and_bugs(capsys: pytest.CaptureFixture) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert guarded(interrupted) == 130 and "interrupted" in capsys.readouterr().err
    with pytest.raises(RuntimeError):  # a bug is not swallowed
        guarded(lambda: (_ for _ in ()).throw(RuntimeError("bug")))


def test_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    code = ("import sys, pacim.pipeline\n"
            "def bug(*a, **k): raise RuntimeError('a bug')\n"
            "pacim.pipeline.simulate = bug\n"
            "from pacim.cli import main\n"
            "main(['simulate', '--arch', 'pacim_65nm', '--workload', 'resnet18', '--no-data'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and "Traceback" in r.stderr and "RuntimeError: a bug" in r.stderr
