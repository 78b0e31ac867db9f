"""The command line (pacim/cli/): `pacim simulate` end to end, one-line user errors with exit
status 2, help texts, the installed entry point, and lazy command registration."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pacim.cli import LAZY_COMMANDS, main
from pacim.errors import PacimError

ROOT = Path(__file__).resolve().parent.parent
TOP_KEYS = {"arch", "workload", "macs", "ops", "bit_serial_cycles", "accuracy", "layers",
            "cycles", "latency_s", "throughput_tops", "energy_pj", "tops_per_w",
            "peak_tops_per_w", "peak_throughput_tops", "peak_tops_per_w_1b",
            "peak_throughput_tops_1b", "memory", "energy_breakdown_pj"}


def test_cli_simulate_outputs(tmp_path):
    r = CliRunner().invoke(main, [
        "simulate", "--arch", str(ROOT / "arch_configs/pacim_65nm.yaml"),
        "--workload", "resnet18-cifar", "--set", "pac.operand=4",
        "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "l.csv"),
        "--plot", str(tmp_path / "p.png"), "--trace", str(tmp_path / "t.csv")])
    assert r.exit_code == 0, r.output
    assert "layer1.0.conv1" in r.output and "TOPS/W" in r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert TOP_KEYS <= set(rep)
    rows = list(csv.DictReader((tmp_path / "l.csv").open()))
    assert len(rows) == len(rep["layers"]) and "energy_pj" in rows[0]
    assert (tmp_path / "p.png").stat().st_size > 10_000
    trace = list(csv.reader((tmp_path / "t.csv").open()))
    assert trace[0][:3] == ["start", "end", "resource"] and len(trace) > 100


@pytest.mark.parametrize("args,msg", [
    (["--arch", "nope.yaml", "--workload", "resnet18"], "no such file"),
    (["--arch", "{bad}", "--workload", "resnet18"], "no such file"),
    (["--arch", "pacim_65nm", "--workload", "resnet99"], "unknown workload"),
    (["--arch", "pacim_65nm", "--workload", "resnet18", "--set", "pac.operand=12"],
     "pac.operand"),
    (["--arch", "pacim_65nm", "--workload", "resnet18", "--set", "pac.colour=red"],
     "unknown key"),
    (["--arch", "pacim_65nm", "--workload", "resnet18", "--no-data", "--json",
      "/nonexistent/dir/r.json"], "cannot write"),
])
def test_cli_errors_exit_2_one_line(args, msg):
    r = CliRunner().invoke(main, ["simulate", *args])
    assert r.exit_code == 2, r.output
    assert msg in r.output.lower()
    assert "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1


def test_cli_bad_yaml_file(tmp_path):
    bad = tmp_path / "chip.yaml"
    bad.write_text("technology: {vdd: [\n")
    r = CliRunner().invoke(main, ["simulate", "--arch", str(bad), "--workload", "resnet18"])
    assert r.exit_code == 2 and "invalid YAML" in r.output


def test_help_texts():
    for cmd in ([], ["simulate"], ["energy"], ["error-study"]):
        r = CliRunner().invoke(main, [*cmd, "--help"])
        assert r.exit_code == 0 and "Example" in r.output


def test_console_script_no_traceback(tmp_path):
    """The installed entry point: exit 2 and no traceback for a missing arch file."""
    r = subprocess.run([sys.executable, "-m", "pacim", "simulate", "--arch", "missing.yaml",
                        "--workload", "resnet18"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "no such file" in r.stderr


def test_failed_run_leaves_no_empty_output_files(tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["simulate", "--arch", "pacim_65nm", "--workload", "resnet99",
                                  "--json", str(out)])
    assert r.exit_code == 2 and not out.exists()


def test_every_command_is_registered_lazily() -> None:
    """`pacim --help` lists every command; importing the CLI loads none of them."""
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in LAZY_COMMANDS:
        assert name in r.output
    code = ("import json, sys; import pacim.cli; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pacim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    loaded = set(json.loads(out))
    commands = {target.partition(":")[0] for target in LAZY_COMMANDS.values()}
    assert not loaded & commands, loaded & commands
    assert not {"pacim.pipeline", "pacim.sched", "pacim.workloads"} & loaded


def _quick_tour() -> list[tuple[list[str], str]]:
    """README's quick tour as (argv, comment) per command, continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out = []
    for cmd in block.replace("\\\n", " ").splitlines():
        text, _, comment = cmd.partition("#")
        if text.strip():
            out.append((shlex.split(text), comment.strip()))
    return out


def _parse(argv: list[str]) -> None:
    """Parse a `pacim ...` command line with click, as running it would (no execution)."""
    cmd: click.Command = main
    ctx, rest = click.Context(main, info_name="pacim"), argv[1:]
    while isinstance(cmd, click.Group):  # the tour gives no group options: name, then its args
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, rest[0]
        cmd, name, rest = sub, rest[0], rest[1:]
        ctx = cmd.make_context(name, list(rest), parent=ctx)


def test_readme_set_up_and_quick_tour_work_as_written(tmp_path: Path) -> None:
    """The set-up activates the venv the tour's `pacim` lives in; every tour command parses
    (commands, options, values), names files that ship (or that an earlier tour command
    writes, or marked as the user's own), and the fast ones run as written."""
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("## Quick tour", 1)[0]
    install = next(ln for ln in setup.splitlines() if ln.startswith("python3 -m venv .venv"))
    assert ". .venv/bin/activate && pacim " in install
    assert install.index(". .venv/bin/activate") < install.index("&& pacim ")  # pacim on PATH
    assert install.endswith("pacim simulate --arch arch_configs/pacim_65nm.yaml "
                            "--workload resnet18")  # the main job
    extras = re.search(r"pip install -e '(\.\[[a-z,]+\])'", install)
    assert extras, install
    ci = (ROOT / ".ci/run").read_text()  # CI installs as README says
    assert f"python3 -m venv .venv && .venv/bin/pip install -q -e '{extras[1]}'" in ci
    tour = _quick_tour()
    assert [a[0] for a, _ in tour].count("pacim") >= 8
    for name in ("arch_configs", "workloads"):
        (tmp_path / name).symlink_to(ROOT / name)
    exe = Path(sys.executable).with_name("pacim")  # the entry point the install made
    runner = [str(exe)] if exe.exists() else [sys.executable, "-m", "pacim"]
    written: set[str] = set()
    ran = 0
    for argv, comment in tour:
        if argv[0] != "pacim":
            assert argv[:3] == ["python", "-m", "benchmarks"], argv
            continue
        _parse(argv)
        files = [a for a in argv if "/" in a or Path(a).suffix in (".yaml", ".onnx", ".jsonl")]
        inputs = [a for a in files if not (ROOT / a).exists() and a not in written]
        outputs = {argv[i + 1] for i, a in enumerate(argv[:-1])
                   if a in ("--json", "--csv", "--plot", "--trace", "--out", "-o")}
        assert set(inputs) <= outputs or "your" in comment, (argv, inputs)
        written |= outputs
        fast = "--no-data" in argv or argv[1] in ("energy", "area", "plot")
        if fast:
            r = subprocess.run(runner + argv[1:], cwd=tmp_path, capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 0 and r.stderr == "", (argv, r.stderr)
            ran += 1
    assert ran >= 4
    assert {"sweep.jsonl", "pareto.png"} <= set(os.listdir(tmp_path))


def test_gguf_workload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: GGUF is a workload source: any Llama GGUF, built like smollm2-135m."""
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    from pacim.workloads import load_workload
    from tests.test_llm_synthetic import write_gguf

    monkeypatch.setenv("PACIM_CACHE", str(tmp_path / "cache"))
    model = write_gguf(tmp_path / "tiny.gguf")
    wl = load_workload(model, tokens=16)
    assert wl.name == "tiny-16" and wl.has_data and wl.meta["tokens"] == 16
    assert {la.name for la in wl.layers} >= {"blk.0.attn_q", "blk.0.ffn_down", "output"}
    r = CliRunner().invoke(main, ["simulate", "--arch", "pacim_65nm", "--workload", str(model),
                                  "--tokens", "16", "-q"])
    assert r.exit_code == 0, r.output
    assert "workload tiny-16" in r.output
    r = CliRunner().invoke(main, ["simulate", "--arch", "pacim_65nm", "--workload",
                                  str(tmp_path / "missing.gguf")])
    assert r.exit_code == 2 and "not found" in r.output
    with pytest.raises(PacimError, match="unknown option.*valid options: tokens"):
        load_workload(model, batch=2)
