"""``edgeshrink profile bundle --out calibrate.pyz``: calibration as one file for a device that
has only Python, numpy and onnxruntime (``pip install numpy onnxruntime``).

The zipapp carries what the device cannot make: every micro-benchmark model, built and
quantized here exactly as ``profile calibrate`` builds them (``timing.build_micro_models``), and
the drift gauge. Beside them, the modules that time, read the graph, fit and write, copied from
this installation unchanged: every module ``on_device`` reaches (``device_modules``); package
``__init__`` files, which only re-export, become empty, so importing a module pulls in no
pydantic. Then tomli-w (pure Python, MIT) and a stand-in for the few onnx pieces the graph
reading uses (``onnx_standin``). ``on_device`` is its entry point.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
import zipapp
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeshrink.core.atomic import atomic_path
from edgeshrink.hardware_profiles.calibrate import on_device

ENTRY_MODULE = "hardware_profiles.calibrate.on_device"
DEVICE_LAYERS = ("core", "hardware_profiles")  # never spaces (torch) or anything above
PRECISIONS = ("fp32", "int8")  # what onnxruntime's CPU kernels run, as calibrate times them


def _models(data: Path, quick: bool, progress: Callable[[str], None]) -> dict[str, object]:
    """Build every model the benchmark sets time (``quick``: the quick set's only) into
    ``data/models``; the manifest."""
    from edgeshrink.hardware_profiles.calibrate.catalogue import (
        GAUGE_INPUT,
        MICRO_BENCHMARKS,
        QUICK_BENCHMARKS,
    )
    from edgeshrink.hardware_profiles.calibrate.timing import build_micro_models
    from edgeshrink.hardware_profiles.gauge import write_gauge_model
    from edgeshrink.hardware_profiles.registry import load_profile

    models = data / on_device.MODELS
    models.mkdir(parents=True)
    labels = set() if quick else {b.label for b in MICRO_BENCHMARKS}
    benches = (*(() if quick else MICRO_BENCHMARKS),
               *(b for b in QUICK_BENCHMARKS if b.label not in labels))
    progress(f"building and quantizing the models of {len(benches)} micro-benchmarks ...")
    with tempfile.TemporaryDirectory() as tmp:
        built = build_micro_models(Path(tmp), PRECISIONS, benches)
        for b in built:
            shutil.copyfile(b.path, models / b.path.name)
        gauge = write_gauge_model(models / "gauge.onnx", GAUGE_INPUT[1], GAUGE_INPUT[2])
    return {
        "format": on_device.FORMAT, "quick_only": quick, "gauge": gauge.name,
        # calibrate() times its gauge with the host profile's settings; so does the device
        "gauge_settings": dataclasses.asdict(load_profile("host").measurement),
        "models": [{"label": b.label, "length": b.length, "precision": b.precision,
                    "file": b.path.name, "shape": list(b.shape)} for b in built],
    }


def _imports(tree: ast.AST) -> Iterator[str]:
    """``edgeshrink`` modules a module imports, at any depth but under ``if TYPE_CHECKING``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        yield from _imports(node)


def _source(name: str) -> Path | None:
    """The file of module ``edgeshrink.<name>`` of a device layer; None for anything else."""
    if not name.startswith(tuple(f"{layer}." for layer in DEVICE_LAYERS)):
        return None
    try:
        spec = importlib.util.find_spec(f"edgeshrink.{name}")
    except ImportError:  # a class or function imported from a module, not a module
        return None
    if spec is None or spec.submodule_search_locations is not None or not spec.origin:
        return None  # packages: their __init__ only re-exports; the bundle's are empty
    return Path(spec.origin)


def device_modules() -> dict[str, Path]:
    """Every module the device's entry point reaches, by name: what the bundle carries."""
    found: dict[str, Path] = {}
    todo = [ENTRY_MODULE]
    while todo:
        name = todo.pop()
        path = _source(name)
        if path is None or name in found:
            continue
        found[name] = path
        todo += [m.removeprefix("edgeshrink.") for m in _imports(ast.parse(path.read_text()))
                 if m.startswith("edgeshrink.")]
    return found


def _sources(stage: Path) -> None:
    """The device's modules as installed here, under ``edgeshrink/``, and empty packages."""
    for name, path in device_modules().items():
        target = stage / "edgeshrink" / (name.replace(".", "/") + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for package in {p.parent for p in (stage / "edgeshrink").rglob("*.py")}:
        if package != stage / "edgeshrink":
            (package / "__init__.py").write_text(
                '"""Bundled for calibration on a device: the modules only, no re-exports."""\n')


def _vendor(vendor: Path) -> None:
    """tomli_w as installed (with its licence), and onnx's messages through the stand-in."""
    import onnx
    import tomli_w

    shutil.copytree(Path(tomli_w.__file__).parent, vendor / "tomli_w",
                    ignore=shutil.ignore_patterns("__pycache__"))
    licence = next(Path(f.locate()) for f in importlib.metadata.files("tomli_w") or ()
                   if f.name.upper().startswith("LICENSE"))
    shutil.copyfile(licence, vendor / "tomli_w" / "LICENSE")
    (vendor / "onnx").mkdir()
    standin = importlib.util.find_spec("edgeshrink.hardware_profiles.calibrate.onnx_standin")
    shutil.copyfile(standin.origin, vendor / "onnx" / "__init__.py")
    (vendor / "onnx" / on_device.ONNX_DESCRIPTOR).write_bytes(
        onnx.onnx_ml_pb2.DESCRIPTOR.serialized_pb)


def write_bundle(out: Path, quick: bool = False, progress: Callable[[str], None] = print) -> int:
    """Build the zipapp and replace ``out`` with it in one step; its size in bytes. ``quick``:
    only the models ``--quick`` times (a smaller file; the device must then pass ``--quick``)."""
    from edgeshrink.hardware_profiles.calibrate.write import check_out

    out = check_out(out, ".pyz")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        data = stage / on_device.DATA
        manifest = _models(data, quick, progress)
        (data / on_device.MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _vendor(data / on_device.VENDOR)
        _sources(stage)
        with atomic_path(out) as tmp_out:
            zipapp.create_archive(stage, tmp_out, interpreter="/usr/bin/env python3",
                                  main=f"edgeshrink.{ENTRY_MODULE}:main", compressed=True)
    return out.stat().st_size
