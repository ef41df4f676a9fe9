"""Every option of every command, its default and its valid range, checked once at the boundary.

Kept free of optuna and torch: the CLI builds its argparse defaults from :class:`SearchOptions`
and refuses a bad value in one line before any heavy import, any file written or any training.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgeshrink.core.errors import EdgeshrinkError, ProfileError
from edgeshrink.core.metrics import DEFAULT_OBJECTIVES, parse_objectives
from edgeshrink.evaluators.settings import TrainSettings
from edgeshrink.spaces.presets import resolve_space

# search/samplers.py's SAMPLERS registry has these keys (tests/search/test_bad_inputs.py checks it).
SAMPLER_NAMES = ("gp", "tpe", "nsga2", "random")
FAMILY_NAMES = ("base", "student")  # spaces.families.FAMILIES (tests check they agree)
AUGMENT_NAMES = ("none", "standard")  # evaluators.augment.AUGMENTS (tests check they agree)
DEVICE_FORMS = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
RESOLUTION_RANGE = (8, 256)  # as a space file's input_resolution
SEED_MAX = 2**32 - 1  # numpy and Optuna samplers take a non-negative 32-bit seed
# The dashboard's defaults, here so the CLI can show them without importing Dash or pandas.
DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8050
DASHBOARD_REFRESH_S = 3.0


@dataclass
class SearchOptions:
    study: str = "digits"
    run_dir: Path | None = None
    storage: str | None = None
    # 40: a front as good as 80 trials' within run-to-run spread, in 40-45% of the time; 30 fell
    # short in one of two seeds (benchmarks/default_budget.py, BENCHMARKS.md "Default budget")
    trials: int = 40
    timeout: float | None = None
    seed: int = 0
    sampler: str = "gp"  # won the sampler benchmark (BENCHMARKS.md)
    max_latency: float | None = None
    min_accuracy: float | None = None
    profile: str = "host"
    dataset: str = "digits"
    data_dir: Path | None = None  # root of torchvision data sets (mnist, cifar10, ...)
    download: bool = False  # fetch a torchvision data set that is not in data_dir
    teacher: str | None = None  # TorchScript, ONNX or ARCH:WEIGHTS; None trains one
    space: str | Path | None = None  # a preset name (spaces.presets) or a space file
    epochs: int = TrainSettings.epochs
    finetune_epochs: int = TrainSettings.finetune_epochs
    report: bool = True  # read by reports.writer.search_and_report
    progress: bool = True
    jobs: int = 1  # worker processes on this machine, this one included
    worker: int | None = None  # set for an `edgeshrink worker` joining the study
    early_stop: bool = True  # abort hopeless trials after an epoch (search/early_stop.py)
    train_threads: int | None = None  # torch threads per trial; None keeps torch's default
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES  # names in core/metrics.py
    weight_sharing: bool = False  # trials inherit a supernet's weights (evaluators/supernet/)
    channels_last: bool = TrainSettings.channels_last  # training memory layout (benchmarks)
    model: str | None = None  # the user's own model to compress: ARCH:WEIGHTS or module:factory
    families: tuple[str, ...] | None = None  # None: base and student with --model, else student
    resolution: int | None = None  # input size of every candidate; None: the space's
    device: str = "auto"  # where trials train: auto, cpu, cuda, cuda:N, mps
    batch_size: int = TrainSettings.batch_size  # the learning rate scales with it (linearly)
    augment: str | None = None  # none or standard; None: standard except on digits
    loader_workers: int = 0  # processes augmenting training images beside each trial


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(SearchOptions)}


# ---------------------------------------------------------------- checks, one line each


def at_least(option: str, value: int | None, low: int, what: str = "") -> None:
    if value is not None and value < low:
        raise EdgeshrinkError(f"{option} must be at least {low}{what}, got {value}")


def positive(option: str, value: float | None, unit: str) -> None:
    """A finite number above zero: NaN and infinity are refused, not silently ignored."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise EdgeshrinkError(f"{option} must be positive {unit}, got {value}")


def existing_file(option: str, path: Path | str | None, what: str) -> None:
    if path is None:
        return
    p = Path(path)
    if not p.exists():
        raise EdgeshrinkError(f"{option}: {what} {str(p)!r} does not exist")
    if not p.is_file():
        raise EdgeshrinkError(f"{option}: {what} {str(p)!r} is not a file")


def check_space(option: str, space: str | Path | None) -> None:
    """A preset name (``spaces.presets``) or an existing space file."""
    if space is not None:
        try:
            resolve_space(space)
        except EdgeshrinkError as exc:
            raise EdgeshrinkError(f"{option}: {exc}") from None


def not_a_file(option: str, path: Path | None) -> None:
    """A directory to create or write into must not be an existing file."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise EdgeshrinkError(f"{option} {path} is a file, not a directory")


def check_study(study: str, run_dir: Path | None) -> None:
    """``--study`` names a directory under runs/ unless ``--run-dir`` is given."""
    if not study.strip():
        raise EdgeshrinkError("--study must not be empty")
    if run_dir is None and (study in (".", "..") or any(c in study for c in "/\\\0")):
        raise EdgeshrinkError(f"--study {study!r} is not a plain directory name (its default "
                              "run directory is runs/<study>); pick another name or pass --run-dir")
    not_a_file("--run-dir", run_dir)


def check_profile(option: str, profile: str | Path | None) -> None:
    """A path (not a built-in name) must exist; built-in names are checked by the registry. A
    profile measured with a runtime that is not installed (``host-litert`` without the [tflite]
    extra) is refused here, naming how to install it."""
    text = str(profile or "")
    if text.endswith(".toml") or "/" in text:
        existing_file(option, text, "profile file")
    if not text:
        return
    # Read here, not at import: the CLI imports this module for its defaults (pydantic, numpy).
    from edgeshrink.hardware_profiles.registry import load_profile
    from edgeshrink.hardware_profiles.runtimes import RUNTIMES

    try:
        loaded = load_profile(text)
    except ProfileError:
        return  # worded by the search when it loads the profile, as before
    if loaded.latency_method == "measured":
        missing = RUNTIMES[loaded.measurement.runtime].missing(f"{option} {text}")
        if missing:
            raise EdgeshrinkError(missing)


def check_teacher(teacher: str | None) -> None:
    """A file, or ARCH:WEIGHTS whose weights file exists (the architecture is checked later)."""
    if not teacher:
        return
    arch, sep, weights = teacher.partition(":")
    if not sep or Path(teacher).exists():
        existing_file("--teacher", teacher, "teacher file")
    elif not arch or not weights:
        raise EdgeshrinkError(f"--teacher {teacher!r}: write a file or ARCH:WEIGHTS, "
                              "e.g. resnet18:weights.pt")
    else:
        existing_file("--teacher", weights, "teacher state dict")


def families_of(opts: SearchOptions) -> tuple[str, ...]:
    """The families a search samples: both with ``--model`` unless ``--families`` says else."""
    if opts.families:
        return tuple(dict.fromkeys(opts.families))
    return ("base", "student") if opts.model else ("student",)


def check_families(opts: SearchOptions) -> None:
    unknown = [f for f in opts.families or () if f not in FAMILY_NAMES]
    if unknown:
        raise EdgeshrinkError(f"--families: unknown family {unknown[0]!r}; choose from "
                              f"{', '.join(FAMILY_NAMES)}")
    if "base" in families_of(opts) and not opts.model:
        raise EdgeshrinkError("--families base needs --model (the model to compress)")
    low, high = RESOLUTION_RANGE
    if opts.resolution is not None and not low <= opts.resolution <= high:
        raise EdgeshrinkError(f"--resolution must be in {low}..{high} pixels, got "
                              f"{opts.resolution}")


def check_device(option: str, device: str | None) -> None:
    """The form only; whether this machine has that device is evaluators.device's to say."""
    if device is not None and not DEVICE_FORMS.fullmatch(device):
        raise EdgeshrinkError(f"{option} must be auto, cpu, cuda, cuda:N or mps, got {device!r}")


def check_training(opts: SearchOptions) -> None:
    check_device("--device", opts.device)
    at_least("--batch-size", opts.batch_size, 1)
    at_least("--loader-workers", opts.loader_workers, 0)
    if opts.augment is not None and opts.augment not in AUGMENT_NAMES:
        raise EdgeshrinkError(f"--augment must be one of {', '.join(AUGMENT_NAMES)}, got "
                              f"{opts.augment!r}")


def validate(opts: SearchOptions) -> None:
    """Refuse any option outside its range before anything is read, written or trained."""
    check_study(opts.study, opts.run_dir)
    at_least("--trials", opts.trials, 1)
    at_least("--jobs", opts.jobs, 1, " worker process")
    positive("--timeout", opts.timeout, "seconds")
    at_least("--epochs", opts.epochs, 1)
    at_least("--finetune-epochs", opts.finetune_epochs, 0)
    check_training(opts)
    if not 0 <= opts.seed <= SEED_MAX:
        raise EdgeshrinkError(f"--seed must be in 0..{SEED_MAX} (numpy and Optuna take a "
                              f"non-negative 32-bit seed), got {opts.seed}")
    if opts.sampler not in SAMPLER_NAMES:
        raise EdgeshrinkError(f"unknown sampler {opts.sampler!r}; choose one of "
                              f"{', '.join(SAMPLER_NAMES)}")
    positive("--max-latency", opts.max_latency, "milliseconds")
    if opts.min_accuracy is not None and not 0 <= opts.min_accuracy <= 1:
        raise EdgeshrinkError(f"--min-accuracy is a fraction in [0, 1], got {opts.min_accuracy}")
    parse_objectives(opts.objectives)
    check_profile("--profile", opts.profile)
    check_space("--space", opts.space)
    check_teacher(opts.teacher)
    check_families(opts)
    not_a_file("--data-dir", opts.data_dir)
    at_least("worker index", opts.worker, 0)
    at_least("train_threads", opts.train_threads, 1)


# ---------------------------------------------------------------- the other commands


def check_worker(study: str, run_dir: Path | None, index: int | None, space: str | Path | None,
                 profile: str | None, device: str | None = None) -> None:
    check_study(study, run_dir)
    check_device("--device", device)
    at_least("--worker-index", index, 1, " (0 is the search process)")
    check_space("--space", space)
    check_profile("--profile", profile)


def check_export(trial: int | None, max_latency: float | None, ladder: int | None,
                 out: Path) -> None:
    at_least("--trial", trial, 0)
    positive("--max-latency", max_latency, "milliseconds")
    at_least("--ladder", ladder, 1)
    not_a_file("--out", out)


def check_build(config: Path, out: Path, teacher_dir: Path | None) -> None:
    existing_file("build", config, "config file")
    not_a_file("--out", out)
    not_a_file("--teacher-dir", teacher_dir)


def check_dashboard(host: str, port: int, export_dir: Path | None, refresh: float) -> None:
    if not host.strip():
        raise EdgeshrinkError("--host must not be empty")
    if not 1 <= port <= 65535:
        raise EdgeshrinkError(f"--port must be in 1..65535, got {port}")
    not_a_file("--export-dir", export_dir)
    positive("--refresh", refresh, "seconds")
