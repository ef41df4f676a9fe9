"""The layers of the code, checked on every CI run: a violation fails the suite.

Lowest first: core, spaces, hardware_profiles, evaluators, search, reports. Each package may
import only itself and the ones before it; only search and reports import optuna; the CLI
(``search/cli.py``) is the entry point above all of them. An ast walk instead of import-linter:
a few lines, no extra tool to pin, and the message names file and line.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "spaces", "hardware_profiles", "evaluators", "search", "reports")
ENTRY_POINTS = {"search/cli.py"}
OPTUNA_USERS = {"search", "reports"}
HEAVY = ("torch", "torchvision", "optuna", "yaml", "pandas", "onnxruntime", "onnx")


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return out


def _violations() -> list[str]:
    found = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line, module in _imports(path):
                parts = module.split(".")
                if parts[0] == "optuna" and layer not in OPTUNA_USERS:
                    found.append(f"{rel}:{line} imports optuna ({layer} may not)")
                if parts[0] != "edgeshrink" or len(parts) < 2 or parts[1] not in LAYERS:
                    continue
                if LAYERS.index(parts[1]) > rank and rel not in ENTRY_POINTS:
                    found.append(f"{rel}:{line} imports {module} ({layer} is below {parts[1]})")
    return found


def test_each_layer_imports_only_the_layers_below_it():
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "spaces"
    fake.mkdir()
    (fake / "bad.py").write_text("import optuna\nfrom edgeshrink.search.study import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations() == ["spaces/bad.py:1 imports optuna (spaces may not)",
                             "spaces/bad.py:2 imports edgeshrink.search.study "
                             "(spaces is below search)"]


def test_core_uses_only_the_standard_library_and_filelock():
    third_party = [f"{p.name}:{line} {m}" for p in sorted((ROOT / "core").glob("*.py"))
                   for line, m in _imports(p)
                   if m.split(".")[0] not in sys.stdlib_module_names
                   and m.split(".")[0] not in ("edgeshrink", "__future__", "filelock")]
    assert third_party == []


@pytest.mark.parametrize("module", ["edgeshrink.core.errors", "edgeshrink.core.metrics",
                                    "edgeshrink.spaces", "edgeshrink.hardware_profiles",
                                    "edgeshrink.hardware_profiles.int8_arithmetic",
                                    # The CLI stays thin: parsing and option checks load nothing.
                                    "edgeshrink.search.cli", "edgeshrink.search.options"])
def test_importing_a_package_drags_nothing_heavy(module):
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"importing {module} loaded {out}"
