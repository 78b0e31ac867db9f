"""The command line (pacim/cli/): `pacim simulate` end to end, one-line user errors with exit
status 2, help texts, the installed entry point, and lazy command registration."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pacim.cli import LAZY_COMMANDS, main

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
