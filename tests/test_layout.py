"""The house rules, read from the source: module size, one-way data flow, no private imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACIM = ROOT / "pacim"
MAX_LINES = 400

# Modules allowed over MAX_LINES for now, each with why. Strict: an entry that is no longer over
# the limit (or gone) fails too, so the list only shrinks. Generated or data modules would go
# here for good; pacim has none (data lives in YAML and text files).
OVER_LIMIT: dict[str, str] = {}

# The scheduler, the energy model and the report read counts and records, never tensors: they
# must not import the float front end, the workload builders or the LLM front end.
CONSUMERS = ("pacim.sched", "pacim.energy", "pacim.report")
PRODUCERS = ("pacim.functional", "pacim.workloads", "pacim.llm")
# pacim.workloads.ir is the layer description (kind, shapes, stride, padding, exact) that the
# scheduler maps; it holds no numerics and imports nothing of pacim (checked below), so
# depending on it does not pull tensor code into the scheduler.
ALLOWED = ("pacim.workloads.ir",)


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module under pacim/."""
    for p in sorted(PACIM.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), p


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import in a module, at any depth."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, [a.name for a in node.names], node.lineno


def _within(mod: str, roots: tuple[str, ...]) -> bool:
    return any(mod == r or mod.startswith(r + ".") for r in roots)


def test_no_module_over_the_line_limit() -> None:
    over = {}
    for _, p in modules():
        n = len(p.read_text().splitlines())
        if n > MAX_LINES:
            over[p.relative_to(PACIM).as_posix()] = n
    unexpected = {k: v for k, v in over.items() if k not in OVER_LIMIT}
    assert not unexpected, f"modules over {MAX_LINES} lines: {unexpected}"
    stale = sorted(set(OVER_LIMIT) - set(over))
    assert not stale, f"no longer over {MAX_LINES} lines, remove from OVER_LIMIT: {stale}"


def test_data_flows_one_way() -> None:
    bad = []
    for name, p in modules():
        if not _within(name, CONSUMERS):
            continue
        for mod, names, line in imports(name, p):
            targets = [mod] + [f"{mod}.{n}" for n in names]  # `from pacim import llm` too
            for t in targets:
                if _within(t, PRODUCERS) and not _within(t, ALLOWED):
                    bad.append(f"{p.relative_to(ROOT)}:{line} imports {t}")
    assert not bad, "\n".join(bad)


def test_the_layer_description_imports_nothing_of_pacim() -> None:
    path = PACIM / "workloads" / "ir.py"
    found = [m for m, _, _ in imports("pacim.workloads.ir", path) if m.startswith("pacim")]
    assert not found, f"pacim.workloads.ir must stay a plain description; imports {found}"


def test_importing_the_consumers_loads_no_tensor_code() -> None:
    """At run time too: importing sched, energy and report loads none of the producers."""
    code = ("import json, sys; import pacim.sched, pacim.energy, pacim.report; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pacim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    loaded = json.loads(out)
    assert "pacim.sched.scheduler" in loaded  # the check sees what it should
    bad = [m for m in loaded if _within(m, PRODUCERS) and not _within(m, ALLOWED)
           and m != "pacim.workloads"]  # the package itself: its __init__ imports only ir
    assert not bad, bad


def test_no_import_of_another_modules_private_names() -> None:
    bad = []
    for name, p in modules():
        for mod, names, line in imports(name, p):
            if not mod.startswith("pacim"):
                continue
            for n in names:
                if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
                    bad.append(f"{p.relative_to(ROOT)}:{line} imports {mod}.{n}")
            if any(part.startswith("_") and not part.startswith("__")
                   for part in mod.split(".")):
                bad.append(f"{p.relative_to(ROOT)}:{line} imports private module {mod}")
        bad += [f"{p.relative_to(ROOT)}:{line} reads {m}.{attr}"
                for m, attr, line in private_attributes(name, p)]
    assert not bad, "\n".join(bad)


def private_attributes(name: str, path: Path) -> Iterator[tuple[str, str, int]]:
    """(module, attribute, line) of every `alias._name` read on an imported pacim module."""
    known = {m for m, _ in modules()}
    alias: dict[str, str] = {}
    for mod, names, _ in imports(name, path):
        for n in names:
            if f"{mod}.{n}" in known:
                alias[n] = f"{mod}.{n}"
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):  # `as` names of module imports
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.asname and a.name in alias:
                    alias[a.asname] = alias[a.name]
                elif isinstance(node, ast.Import) and a.name in known:
                    alias[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in alias and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            yield alias[node.value.id], node.attr, node.lineno


def test_the_private_check_can_fail(tmp_path: Path) -> None:
    p = tmp_path / "probe.py"
    p.write_text("from .. import energy as e\nfrom ..sweeps import worker\n"
                 "x = e._hidden + worker._WORKLOADS\n")
    found = sorted(a for _, a, _ in private_attributes("pacim.sched.probe", p))
    assert found == ["_WORKLOADS", "_hidden"]


@pytest.mark.parametrize("bad_src, what", [
    ("from ..functional import conv2d\n", "pacim.functional"),
    ("from ..workloads.resnet import build_resnet18\n", "pacim.workloads.resnet"),
    ("from .. import llm\n", "pacim.llm"),
])
def test_the_flow_check_can_fail(tmp_path: Path, bad_src: str, what: str) -> None:
    """The import reader resolves relative imports the way Python does."""
    p = tmp_path / "probe.py"
    p.write_text(bad_src)
    found = [t for m, ns, _ in imports("pacim.sched.probe", p) for t in [m, *(f"{m}.{n}"
                                                                             for n in ns)]]
    assert what in found
