"""A battery of bad invocations, one per class of mistake: every one is refused at the boundary.

Each case runs the CLI in-process (``main([...])``) against a run directory that already holds a
study and a file of the user's, and must: exit 2, print one line to stderr naming the option or
input (plus at most a pointer to ``--help``), show no traceback, refuse before any training, and
leave every byte already in the run directory as it was.
"""

import hashlib
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeshrink.search.cli import main

RUN = "RUN"  # replaced by the run directory that holds a study
HINT = "(see "


def _images(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _folder(counts: dict[str, int]):
    return lambda tmp: f"imagefolder:{_images(tmp / 'imgs', counts)}"


def _split_folder(tmp: Path) -> str:
    _images(tmp / "imgs" / "train", {"cat": 6, "dog": 6})
    _images(tmp / "imgs" / "val", {"cat": 3})
    return f"imagefolder:{tmp / 'imgs'}"


def _empty_folder(tmp: Path) -> str:
    (tmp / "imgs").mkdir()
    return f"imagefolder:{tmp / 'imgs'}"


def _garbage_image(tmp: Path) -> str:
    root = _images(tmp / "imgs", {"cat": 6, "dog": 6})
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return f"imagefolder:{root}"


def _one_class_mnist(tmp: Path) -> str:
    """torchvision's MNIST files whose labels are all 0: one class."""
    raw = tmp / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 5)):
        for kind, arr in (("images-idx3", np.zeros((n, 28, 28), np.uint8)),
                          ("labels-idx1", np.zeros(n, np.uint8))):
            dims = b"".join(struct.pack(">I", d) for d in arr.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(
                struct.pack(">BBBB", 0, 0, 8, arr.ndim) + dims + arr.tobytes())
    return "mnist"


def _file(tmp: Path) -> str:
    path = tmp / "a-file"
    path.write_text("not a directory")
    return str(path)


def _newer_profile(tmp: Path) -> str:
    path = tmp / "newer.toml"
    path.write_text('schema_version = 99\nname = "newer"\n')
    return str(path)


def _config(tmp: Path) -> str:
    path = tmp / "config.yaml"
    path.write_text("not: a config\n")
    return str(path)


def _state_dict(arch: str, classes: int, given_as: str | None = None):
    """``--model ARCH:WEIGHTS`` with a seeded state dict of ``arch`` for ``classes`` classes,
    named as ``given_as`` (another architecture: weights that do not fit it)."""

    def make(tmp: Path) -> str:
        import torch
        import torchvision

        torch.manual_seed(0)
        path = tmp / f"{arch}-{classes}.pt"
        torch.save(torchvision.models.get_model(arch, weights=None,
                                                num_classes=classes).state_dict(), path)
        return f"{given_as or arch}:{path}"

    return make


def _torchscript(tmp: Path) -> str:
    import warnings

    import torch

    path = tmp / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        torch.jit.script(torch.nn.Linear(4, 2)).save(str(path))
    return str(path)


def _onnx(tmp: Path) -> str:
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])
    path = tmp / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return str(path)


SEARCH = ["search", "--trials", "1", "--epochs", "1", "--no-progress", "--run-dir", RUN]
STUDY = ["--study", "done", "--run-dir", RUN]

CASES = {
    # argparse: one line and a pointer to --help, never the usage wall
    "not-an-int": (["search", "--trials", "abc"], "argument --trials: invalid int value: 'abc'"),
    "unknown-option": (["search", "--bogus"], "edgeshrink search: error: unrecognized arguments"),
    "missing-required": (["export", *STUDY, "--knee"], "required: --out"),
    "missing-command": ([], "required: COMMAND"),
    "missing-subcommand": (["profile"], "required: SUBCOMMAND"),
    "port-not-an-int": (["dashboard", *STUDY, "--port", "http"], "argument --port: invalid int"),
    # numbers out of range
    "trials-0": ([*SEARCH, "--trials", "0"], "--trials must be at least 1"),
    "jobs-0": ([*SEARCH, "--jobs", "0"], "--jobs must be at least 1"),
    "timeout-0": ([*SEARCH, "--timeout", "0"], "--timeout must be positive seconds"),
    "timeout-nan": ([*SEARCH, "--timeout", "nan"], "--timeout must be positive seconds"),
    "epochs-0": ([*SEARCH, "--epochs", "0"], "--epochs must be at least 1"),
    "finetune-negative": ([*SEARCH, "--finetune-epochs", "-1"], "--finetune-epochs must be at"),
    "max-latency-negative": ([*SEARCH, "--max-latency", "-2"], "--max-latency must be positive"),
    "max-latency-inf": ([*SEARCH, "--max-latency", "inf"], "--max-latency must be positive"),
    "min-accuracy-percent": ([*SEARCH, "--min-accuracy", "95"], "--min-accuracy is a fraction"),
    "min-accuracy-nan": ([*SEARCH, "--min-accuracy", "nan"], "--min-accuracy is a fraction"),
    "seed-negative": ([*SEARCH, "--seed", "-1"], "--seed must be in 0..4294967295"),
    "seed-too-big": ([*SEARCH, "--seed", str(2**32)], "--seed must be in 0..4294967295"),
    "sampler": ([*SEARCH, "--sampler", "grid"], "unknown sampler 'grid'"),
    "batch-size-0": ([*SEARCH, "--batch-size", "0"], "--batch-size must be at least 1"),
    "loader-workers-negative": ([*SEARCH, "--loader-workers", "-1"],
                                "--loader-workers must be at least 0"),
    "augment-unknown": ([*SEARCH, "--augment", "weird"], "--augment must be one of none, st"),
    "device-unknown": ([*SEARCH, "--device", "gpu"], "--device must be auto, cpu, cuda, cuda:N"),
    "worker-device-unknown": (["worker", *STUDY, "--device", "tpu"], "--device must be auto"),
    "objectives": ([*SEARCH, "--objectives", "accuracy"], "--objectives must include"),
    "worker-index-0": (["worker", *STUDY, "--worker-index", "0"], "--worker-index must be at"),
    "export-ladder-0": (["export", *STUDY, "--ladder", "0", "--out", "OUT"], "--ladder must be"),
    "export-trial-negative": (["export", *STUDY, "--trial", "-1", "--out", "OUT"],
                              "--trial must be at least 0"),
    "export-max-latency": (["export", *STUDY, "--max-latency", "0", "--out", "OUT"],
                           "--max-latency must be positive"),
    "port-0": (["dashboard", *STUDY, "--port", "0"], "--port must be in 1..65535"),
    "port-too-big": (["dashboard", *STUDY, "--port", "70000"], "--port must be in 1..65535"),
    "refresh-0": (["dashboard", *STUDY, "--refresh", "0"], "--refresh must be positive"),
    "predict-format": (["profile", "predict", "m.onnx", "--format", "xml"], "--format must be"),
    "calibrate-kind": (["profile", "calibrate", "--out", "x.toml", "--kind", "tpu"],
                       "--kind must be one of"),
    "bundle-out-not-pyz": (["profile", "bundle", "--out", "calibrate.zip"],
                           "--out must name a .pyz file"),
    # names and paths
    "study-empty": ([*SEARCH, "--study", ""], "--study must not be empty"),
    "study-escapes-runs": (["search", "--study", "../elsewhere"], "not a plain directory name"),
    "run-dir-is-a-file": (["search", "--run-dir", _file], "is a file, not a directory"),
    "profile-missing": ([*SEARCH, "--profile", "pi.toml"], "profile file 'pi.toml' does not"),
    "profile-newer-schema": ([*SEARCH, "--profile", _newer_profile],
                             "from a newer edgeshrink than this one (schema 2)"),
    "export-format-unknown": (["export", *STUDY, "--trial", "0", "--out", "OUT", "--format",
                               "onnx,coreml"], "unknown export format 'coreml'"),
    "space-is-a-folder": ([*SEARCH, "--space", "."], "--space: space file '.' is not a file"),
    "space-unknown-name": ([*SEARCH, "--space", "nosuch"],
                           "--space: unknown space 'nosuch': neither a preset (mcu-96, "),
    "teacher-missing": ([*SEARCH, "--teacher", "t.onnx"], "teacher file 't.onnx' does not exist"),
    "teacher-no-weights": ([*SEARCH, "--teacher", "resnet18:"], "write a file or ARCH:WEIGHTS"),
    "data-dir-is-a-file": ([*SEARCH, "--dataset", "mnist", "--data-dir", _file],
                           "--data-dir"),
    "worker-space-missing": (["worker", *STUDY, "--space", "s.yaml"], "space file 's.yaml'"),
    "export-out-is-a-file": (["export", *STUDY, "--knee", "--out", _file], "--out"),
    "build-config-missing": (["build", "nope.yaml", "--out", "OUT"], "config file 'nope.yaml'"),
    "build-config-invalid": (["build", _config, "--out", "OUT"], "config.yaml"),
    "dashboard-export-dir": (["dashboard", *STUDY, "--export-dir", _file], "--export-dir"),
    # data that cannot train a classifier, refused before anything is trained
    "one-class": ([*SEARCH, "--dataset", _folder({"cat": 8})], "a classifier needs at least 2"),
    "class-of-one": ([*SEARCH, "--dataset", _folder({"cat": 8, "dog": 1})],
                     "class 'dog' has no images in the val split (1 in all)"),
    "class-of-three": ([*SEARCH, "--dataset", _folder({"cat": 8, "dog": 3})],
                       "give every class at least 4 images"),
    "val-lacks-a-class": ([*SEARCH, "--dataset", _split_folder],
                          "class 'dog' has no images in the val split"),
    "empty-folder": ([*SEARCH, "--dataset", _empty_folder], "no images found in"),
    "unreadable-image": ([*SEARCH, "--dataset", _garbage_image], "cannot read image"),
    "mnist-one-class": ([*SEARCH, "--dataset", _one_class_mnist, "--data-dir", "data"],
                        "a classifier needs at least 2"),
    # --model, --families, --resolution: the user's own model is rebuilt and run once on two
    # images before any study, teacher or trial exists (the last three after the data is loaded)
    "model-unknown-arch": ([*SEARCH, "--model", "notanarch:w.pt"],
                           "'notanarch' is neither a torchvision classification architecture"),
    "model-torchscript": ([*SEARCH, "--model", _torchscript],
                          "TorchScript-style file: a frozen graph cannot be pruned structurally; "
                          "pass it as --teacher"),
    "model-onnx": ([*SEARCH, "--model", _onnx],
                   "ONNX-style file: a frozen graph cannot be pruned structurally; pass it as "
                   "--teacher"),
    "families-base-without-model": ([*SEARCH, "--families", "base"],
                                    "--families base needs --model"),
    "families-unknown": ([*SEARCH, "--families", "student,weird"],
                         "--families: unknown family 'weird'"),
    "resolution-too-small": ([*SEARCH, "--resolution", "4"],
                             "--resolution must be in 8..256 pixels, got 4"),
    "model-weights-do-not-fit": ([*SEARCH, "--model", _state_dict("resnet18", 10, "mobilenet_v2")],
                                 "missing key 'features.0.0.weight'"),
    "model-factory-not-importable": ([*SEARCH, "--model", "no_such_pkg.mod:make"],
                                     "cannot import 'no_such_pkg.mod' for --model "
                                     "no_such_pkg.mod:make"),
    "model-wrong-class-count": ([*SEARCH, "--model", _state_dict("resnet18", 3)],
                                "outputs 3 logits per image but the data has 10 classes"),
}


@pytest.fixture
def run_dir(tmp_path):
    """A run directory holding a study 'done' and a file of the user's."""
    import optuna

    from edgeshrink.search.study import open_storage

    run = tmp_path / "run"
    optuna.create_study(study_name="done", directions=["maximize", "minimize"],
                        storage=open_storage(run, None, create=True))
    (run / "notes.txt").write_text("keep me")
    return run


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _expand(arg, tmp_path: Path, run: Path) -> str:
    if callable(arg):
        return str(arg(tmp_path))
    return {RUN: str(run), "OUT": str(tmp_path / "out")}.get(arg, arg)


@pytest.mark.parametrize("args,message", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_refused_in_one_line(args, message, run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [_expand(a, tmp_path, run_dir) for a in args]
    before = _snapshot(run_dir)
    start = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith(HINT)), err
    assert message in lines[0], err
    assert seconds < 20, f"refused only after {seconds:.0f} s"  # no training ran
    after = _snapshot(run_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    # A refused image decode may leave its cache lock; nothing else is added.
    assert all(k.endswith(".lock") for k in after.keys() - before.keys()), after
    assert not (tmp_path / "out").exists() and not (tmp_path / "elsewhere").exists()
    assert not (run_dir / "teacher").exists() and not (run_dir / "trials").exists()


def test_the_console_script_prints_one_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgeshrink.search.cli", "search", "--trials",
                           "abc"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "edgeshrink search: error: argument --trials: invalid int value: 'abc'",
        "(see edgeshrink search --help)",
    ]


def test_parser_defaults_are_search_options_defaults():
    from edgeshrink.search.cli import _build_parser
    from edgeshrink.search.options import DEFAULTS, SearchOptions

    args = _build_parser().parse_args(["search"])
    given = {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)}
    assert set(given) >= {"trials", "seed", "sampler", "epochs", "finetune_epochs", "objectives",
                          "progress", "early_stop", "profile", "dataset", "jobs"}
    assert SearchOptions(**given) == SearchOptions()


def test_one_search_options_and_sampler_names():
    from edgeshrink.evaluators.settings import TrainSettings
    from edgeshrink.evaluators.training import TrainSettings as FromTraining
    from edgeshrink.search.options import SAMPLER_NAMES, SearchOptions
    from edgeshrink.search.runner import SearchOptions as FromRunner
    from edgeshrink.search.samplers import SAMPLERS

    assert FromRunner is SearchOptions and FromTraining is TrainSettings
    assert set(SAMPLER_NAMES) == set(SAMPLERS)


def test_options_and_cli_import_nothing_heavy():
    code = ("import sys, edgeshrink.search.cli, edgeshrink.search.options\n"
            "print(sorted(m for m in ('torch', 'optuna', 'numpy', 'pandas', 'onnx', 'yaml') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("counts,ok", [((4, 4), True), ((4, 3), False), ((9, 2), False)])
def test_the_smallest_class_for_a_60_20_20_split(counts, ok):
    from edgeshrink.core.errors import EdgeshrinkError
    from edgeshrink.evaluators.data.readers import (
        RawImages,
        assign_splits,
        check_trainable,
        smallest_class,
    )

    assert smallest_class((0.6, 0.2)) == 4 and smallest_class((0.8,)) == 3
    y = np.repeat(np.arange(2), counts)
    raw = RawImages(assign_splits({"all": (y, y)}), ("a", "b"))
    if ok:
        check_trainable(raw, "data")
    else:
        with pytest.raises(EdgeshrinkError, match="class 'b' has no images"):
            check_trainable(raw, "data")


AFTER_DECODING = {
    "wrong-class-count": (_state_dict("resnet18", 3),
                          "outputs 3 logits per image but the data has 2 classes"),
    "weights-do-not-fit": (_state_dict("resnet18", 2, "mobilenet_v2"),
                           "missing key 'features.0.0.weight'"),
}


@pytest.mark.parametrize("model,message", list(AFTER_DECODING.values()), ids=list(AFTER_DECODING))
def test_a_model_refused_after_decoding_images_writes_no_study(model, message, run_dir, tmp_path,
                                                              capsys, monkeypatch):
    """With a decoded data set (digits above is embedded and writes nothing), a --model refused
    only once the images are loaded leaves no study, teacher or trial: at most the run
    directory's decoded-image cache under data/ (and its lock) is new."""
    import optuna

    from edgeshrink.search.study import open_storage

    monkeypatch.chdir(tmp_path)
    dataset = _folder({"cat": 8, "dog": 8})(tmp_path)
    before = _snapshot(run_dir)
    code = main([_expand(a, tmp_path, run_dir) for a in SEARCH]
                + ["--dataset", dataset, "--model", model(tmp_path)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], err
    after = _snapshot(run_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(k.startswith("data/") for k in after.keys() - before.keys()), after
    assert optuna.get_all_study_names(open_storage(run_dir, None, create=False)) == ["done"]
    assert not (run_dir / "teacher").exists() and not (run_dir / "trials").exists()
