"""``edgeshrink profile bundle``: the zipapp calibrates in a fresh virtual environment that has
only numpy and onnxruntime (and what pip installs with them), and the profile it writes loads
here. Its onnx stand-in reads every bundled graph exactly as onnx does."""

import dataclasses
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeshrink.hardware_profiles.calibrate.catalogue import QUICK_BENCHMARKS
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.cli import main

pytestmark = pytest.mark.slow  # builds a bundle and a virtual environment, times ~100 models

# Nothing of this environment may leak into the device's: no user site, no PYTHONPATH.
ENV = {**{k: v for k, v in os.environ.items()
          if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}, "PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "calibrate.pyz"
    assert main(["profile", "bundle", "--out", str(out), "--quick"]) == 0
    return out


@pytest.fixture(scope="module")
def device_python(tmp_path_factory) -> Path:
    """A fresh venv with numpy and onnxruntime at this environment's versions, nothing else."""
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=ENV, timeout=300)
    python = venv / "bin" / "python"
    pins = [f"{p}=={importlib.metadata.version(p)}" for p in ("numpy", "onnxruntime")]
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return python


def _run(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=ENV,
                          timeout=900)


def test_the_device_venv_lacks_what_the_search_needs(device_python):
    for module in ("onnx", "pydantic", "tomli_w", "edgeshrink"):
        assert _run(device_python, "-c", f"import {module}").returncode != 0, module


def test_zipapp_calibrates_with_numpy_and_onnxruntime_only(bundle, device_python, tmp_path):
    out = tmp_path / "board" / "pi.toml"
    result = _run(device_python, str(bundle), "--out", str(out), "--name", "pi-4", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out}" in result.stdout and not result.stderr
    profile = load_profile(str(out))  # the schema check the device skipped
    assert profile.name == "pi-4" and profile.precisions == ("fp32", "int8")
    assert profile.latency_method == "predicted" and profile.fusion == "onnxruntime_layout"
    assert all(v > 0 for v in profile.peak_gmacs.values()) and profile.bandwidth_gbps > 0
    assert profile.kernels and any(k.startswith("QLinearConv") for k in profile.kernels)
    assert profile.calibrated_on.arch == platform.machine()
    manifest = json.loads(zipfile.Path(bundle, "bundle/manifest.json").read_text())
    quick = {b.label for b in QUICK_BENCHMARKS}
    timed = sum(m["label"] in quick for m in manifest["models"])
    assert f"{timed} micro-benchmark timings" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["pi.toml"]  # no temporary left


BAD = {  # OUT: an existing profile; TXT: a .txt file; DIR: a directory named like a profile
    "out-not-toml": (["--out", "TXT", "--quick"], "--out must name a .toml file"),
    "out-missing": (["--quick"], "the following arguments are required: --out"),
    "unknown-option": (["--out", "OUT", "--quick", "--fast"], "unrecognized arguments: --fast"),
    "runtime-unknown": (["--out", "OUT", "--quick", "--runtime", "tvm"], "--runtime must be one"),
    "runtime-litert": (["--out", "OUT", "--quick", "--runtime", "litert"],
                       "--runtime litert is not in this bundle"),
    "full-set-from-quick-bundle": (["--out", "OUT"], "holds only the quick set"),
    "out-is-a-directory": (["--out", "DIR", "--quick"], "is a directory"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_leaves_out_as_it_was(bundle, device_python, tmp_path,
                                                                case):
    args, expected = BAD[case]
    out = tmp_path / "pi.toml"
    out.write_text("keep me")
    (tmp_path / "dir.toml").mkdir()
    paths = {"OUT": out, "TXT": tmp_path / "pi.txt", "DIR": tmp_path / "dir.toml"}
    result = _run(device_python, str(bundle), *(str(paths.get(a, a)) for a in args))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == "" and out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.toml", "pi.toml"]


def test_without_onnxruntime_it_says_what_to_install(bundle, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True,
                   env=ENV, timeout=300)
    out = tmp_path / "pi.toml"
    result = _run(bare / "bin" / "python", str(bundle), "--out", str(out), "--quick")
    assert result.returncode == 2 and result.stdout == "" and not out.exists()
    assert result.stderr.splitlines() == [
        "calibrate.pyz: error: numpy is not installed here; pip install numpy onnxruntime"]


def test_the_onnx_stand_in_reads_every_bundled_graph_as_onnx_does(bundle, device_python,
                                                                    tmp_path):
    """The device reads graphs through calibrate.onnx_standin; here onnx reads the same files."""
    with zipfile.ZipFile(bundle) as z:
        names = [n for n in z.namelist() if n.startswith("bundle/models/") and n.endswith(".onnx")]
        z.extractall(tmp_path, names)
    models = tmp_path / "bundle" / "models"
    code = (
        "import dataclasses, json, sys\n"
        f"sys.path.insert(0, {str(bundle)!r})\n"
        f"sys.path.append({str(bundle / 'bundle' / 'vendor')!r})\n"
        "import onnx\n"
        "assert 'calibrate.pyz' in onnx.__file__, onnx.__file__\n"
        "from pathlib import Path\n"
        "from edgeshrink.hardware_profiles.graph_layers import analyse_graph\n"
        f"files = sorted(Path({str(models)!r}).glob('*.onnx'))\n"
        "print(json.dumps({f.name: [dataclasses.asdict(la) for la in\n"
        "                           analyse_graph(f, 'onnxruntime_layout')] for f in files}))\n"
    )
    result = _run(device_python, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    stand_in = json.loads(result.stdout)
    assert len(stand_in) == len(names) > 50
    for path in sorted(models.glob("*.onnx")):
        layers = [dataclasses.asdict(la) for la in analyse_graph(path, "onnxruntime_layout")]
        assert _unnumbered(stand_in[path.name]) == _unnumbered(layers), path.name


def _unnumbered(layers: list[dict]) -> list[str]:
    """The layers, in an order of their own: onnxruntime numbers the Reorder nodes it inserts
    ("ReorderOutput_token_31") and orders independent nodes differently from one session to the
    next, and no cost depends on either; everything else must match exactly."""
    return sorted(json.dumps({**la, "name": re.sub(r"_token_\d+$", "", la["name"])},
                             sort_keys=True) for la in json.loads(json.dumps(layers)))
