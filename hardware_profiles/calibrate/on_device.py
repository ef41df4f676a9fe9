"""``python calibrate.pyz --out my-device.toml``: calibrate on a device that has only Python,
numpy and onnxruntime (the bundle ``edgeshrink profile bundle`` writes, ``calibrate.bundle``).

The micro-benchmark models come prebuilt and prequantized in the bundle (building them needs onnx
and quantizing them onnxruntime's onnx-based tool); timing, reading the graph onnxruntime runs
here, fitting and writing are the modules ``profile calibrate`` runs, shipped as they are. The
profile is not checked against the schema here (pydantic stays off the device): ``edgeshrink``
checks it where it is read. Arguments are checked before anything is timed; every refusal is one
line and exit 2, and the profile is written whole or not at all.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edgeshrink.core.errors import EdgeshrinkError

PROG = os.path.basename(sys.argv[0]) if sys.argv[0].endswith(".pyz") else "calibrate.pyz"
DATA = "bundle"  # the folder in the archive: manifest, models, vendor
MANIFEST = "manifest.json"
MODELS = "models"
VENDOR = "vendor"  # pure-Python stand-ins put last on sys.path: onnx's messages, tomli_w
ONNX_DESCRIPTOR = "onnx-ml.desc"  # beside the onnx stand-in (calibrate.onnx_standin)
MIN_PYTHON = (3, 11)
FORMAT = 1  # of the manifest; a bundle and this module come from one build, so they match
# What the bundle times with: the modules each needs on the device, and how to install them
# (protobuf, which reads ONNX graphs in place of onnx, comes with onnxruntime).
BUNDLED = {"onnxruntime": (("numpy", "onnxruntime", "google.protobuf"),
                           "pip install numpy onnxruntime")}
NOT_BUNDLED = {"litert": "its micro-benchmarks are converted from torch on the machine that "
                         "times them; calibrate for LiteRT where edgeshrink[tflite] is installed"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Time edgeshrink's micro-benchmarks on this machine with "
                "onnxruntime and write its hardware profile.")
    p.add_argument("--out", type=Path, required=True, help="profile file to write (.toml)")
    p.add_argument("--name", default=None, help="profile name (default: the file's stem)")
    p.add_argument("--quick", action="store_true", help="fewer micro-benchmarks, less fidelity")
    p.add_argument("--runtime", default="onnxruntime",
                   help=f"what to time with: {', '.join(BUNDLED)} (default %(default)s)")
    return p


def _check_runtime(runtime: str) -> None:
    if runtime in NOT_BUNDLED:
        raise EdgeshrinkError(f"--runtime {runtime} is not in this bundle: {NOT_BUNDLED[runtime]}")
    if runtime not in BUNDLED:
        raise EdgeshrinkError(f"--runtime must be one of {list(BUNDLED)} in this bundle, got "
                              f"{runtime!r}")
    modules, install = BUNDLED[runtime]
    for needed in modules:
        try:
            found = importlib.util.find_spec(needed) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is missing
            found = False
        if not found:
            raise EdgeshrinkError(f"{needed} is not installed here; {install}")


def bundle_root() -> zipfile.Path:
    """The bundle's data folder inside the archive this module was loaded from."""
    archive = getattr(__loader__, "archive", None)  # set by zipimport
    if archive is None:
        raise EdgeshrinkError("no bundled models here: run the archive `edgeshrink profile "
                              "bundle --out calibrate.pyz` writes")
    sys.path.append(os.path.join(archive, DATA, VENDOR))  # after any installed onnx / tomli_w
    return zipfile.Path(archive, f"{DATA}/")


def read_manifest(data: Any, quick: bool) -> dict[str, Any]:
    """What the bundle holds, refused where it cannot serve this run."""
    manifest = json.loads((data / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise EdgeshrinkError("the bundle's manifest is of another format; bundle again")
    if manifest["quick_only"] and not quick:
        raise EdgeshrinkError("this bundle holds only the quick set's models (`edgeshrink "
                              "profile bundle --quick`): add --quick, or bundle without it")
    return manifest


def calibrate_from(data: Any, manifest: dict[str, Any], out: Path, name: str, quick: bool,
                   workdir: Path, progress: Callable[[str], None]) -> tuple[int, float]:
    """Time the bundled models of the chosen benchmark set here, fit and write ``out``.
    Returns (models timed, the kernel table's fit error)."""
    import numpy as np

    from edgeshrink.hardware_profiles.calibrate.catalogue import (
        GAUGE_INPUT,
        MICRO_BENCHMARKS,
        QUICK_BENCHMARKS,
    )
    from edgeshrink.hardware_profiles.calibrate.timing import Built, time_micro_models
    from edgeshrink.hardware_profiles.calibrate.write import fit_and_write
    from edgeshrink.hardware_profiles.measure import calibrate_gauge
    from edgeshrink.hardware_profiles.profile_terms import Measurement

    def extract(file: str) -> Path:
        path = workdir / file
        path.write_bytes((data / MODELS / file).read_bytes())
        return path

    by_label: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["models"]:
        by_label.setdefault(entry["label"], []).append(entry)
    built = [Built(e["label"], e["length"], e["precision"], extract(e["file"]), tuple(e["shape"]))
             for bench in (QUICK_BENCHMARKS if quick else MICRO_BENCHMARKS)
             for e in by_label[bench.label]]
    settings = Measurement()
    gauge = None
    if settings.drift_correction == "gauge":
        gauge = calibrate_gauge(extract(manifest["gauge"]), np.zeros(GAUGE_INPUT, np.float32),
                                Measurement(**manifest["gauge_settings"]))
    samples = time_micro_models(built, gauge, settings, progress)
    fit = fit_and_write(samples, out, name, None, "cpu", gauge.ms if gauge else None)
    return len(samples), fit.mape


def run(argv: list[str] | None = None, data: Any = None) -> int:
    """The command; ``data``: the bundle's folder (a directory in tests), else the archive's."""
    if sys.version_info < MIN_PYTHON:  # tomllib, and the typing the bundled modules use
        print(f"{PROG}: error: needs Python {'.'.join(map(str, MIN_PYTHON))} or newer, this is "
              f"{sys.version.split()[0]}", file=sys.stderr)
        return 2
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    try:
        _check_runtime(args.runtime)
        data = data if data is not None else bundle_root()
        manifest = read_manifest(data, args.quick)
        from edgeshrink.hardware_profiles.calibrate.write import check_out

        out = check_out(args.out)
        print(f"timing {'the quick set of ' if args.quick else ''}micro-benchmarks (fp32, int8) "
              f"with {args.runtime} on this machine ...", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            n, mape = calibrate_from(data, manifest, out, args.name or out.stem, args.quick,
                                     Path(tmp), lambda line: print("  " + line, flush=True))
    except EdgeshrinkError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"timed {n} models in {time.perf_counter() - start:.0f} s; the kernel costs fit them "
          f"with {mape:.1%} mean absolute error; wrote {out}")
    print(f"copy it to where you search and run: edgeshrink search --profile {out.name}")
    return 0


def main() -> NoReturn:
    sys.exit(run())
