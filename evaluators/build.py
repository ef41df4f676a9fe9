"""``config.yaml``: the full recipe of one exported model, and rebuilding the model from it.

An export ships the trained weights, but a user who wants to retrain on new data, audit the
result or change one choice needs the recipe: every choice of the candidate, the data set, the
training budget and the seeds. ``build_from_config`` runs the same pipeline a search trial ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.pipeline import EvaluationResult, evaluate_candidate
from edgeshrink.evaluators.teacher.load import load_teacher, parse_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.measure import prepare_gauge
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.spaces.candidate import Candidate

CONFIG_SCHEMA = 1


@dataclass(frozen=True)
class BuildConfig:
    candidate: Candidate
    dataset: str
    training: TrainSettings
    seed: int  # the trial's seed: initialisation, batch order, fine-tune
    teacher_seed: int
    profile: str
    source: dict[str, Any] = field(default_factory=dict)  # study and trial it came from
    expected: dict[str, Any] = field(default_factory=dict)  # metrics of the exported model
    data_dir: str | None = None  # root of a torchvision data set, as the search used it
    teacher: str | None = None  # the --teacher of the search; None: trained here

    def to_dict(self) -> dict[str, Any]:
        return {
            "edgeshrink_config": CONFIG_SCHEMA,
            "source": self.source,
            "dataset": self.dataset,
            **({"data_dir": self.data_dir} if self.data_dir else {}),
            **({"teacher": self.teacher} if self.teacher else {}),
            "candidate": self.candidate.to_dict(),
            "training": asdict(self.training),
            "seed": self.seed,
            "teacher_seed": self.teacher_seed,
            "profile": self.profile,
            "expected": self.expected,
        }

    def to_yaml(self) -> str:
        header = ("# edgeshrink model recipe: `edgeshrink build config.yaml --out DIR`\n"
                  "# retrains and re-exports this model; change a choice to build a variant.\n")
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse_build_config(raw: Any, source: str = "config") -> BuildConfig:
    """Validate a loaded config; every problem names the file and the field."""
    if not isinstance(raw, dict):
        raise EdgeshrinkError(f"{source}: expected a mapping at the top level")
    schema = raw.get("edgeshrink_config")
    if schema != CONFIG_SCHEMA:
        raise EdgeshrinkError(
            f"{source}: 'edgeshrink_config' must be {CONFIG_SCHEMA} (is this an edgeshrink "
            f"config.yaml?), got {schema!r}"
        )
    for key in ("dataset", "candidate", "training", "seed", "profile"):
        if key not in raw:
            raise EdgeshrinkError(f"{source}: missing field {key!r}")
    if not isinstance(raw["candidate"], dict):
        raise EdgeshrinkError(f"{source}: 'candidate' must be a mapping")
    try:
        candidate = Candidate.from_dict(raw["candidate"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeshrinkError(f"{source}: invalid 'candidate': {exc}") from None
    except EdgeshrinkError as exc:
        raise EdgeshrinkError(f"{source}: {exc}") from None
    known = {f.name for f in fields(TrainSettings)}
    training = raw["training"]
    if not isinstance(training, dict) or set(training) - known:
        raise EdgeshrinkError(
            f"{source}: 'training' must be a mapping with keys from {sorted(known)}"
        )
    for key in ("data_dir", "teacher"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise EdgeshrinkError(f"{source}: {key!r} must be a path")
    for key in ("seed", "teacher_seed"):
        if not isinstance(raw.get(key, 0), int):
            raise EdgeshrinkError(f"{source}: {key!r} must be an integer")
    return BuildConfig(
        candidate=candidate,
        dataset=str(raw["dataset"]),
        training=TrainSettings(**training),
        seed=raw["seed"],
        teacher_seed=raw.get("teacher_seed", 0),
        profile=str(raw["profile"]),
        source=dict(raw.get("source") or {}),
        expected=dict(raw.get("expected") or {}),
        data_dir=raw.get("data_dir"),
        teacher=raw.get("teacher"),
    )


def load_build_config(path: Path | str) -> BuildConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EdgeshrinkError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeshrinkError(f"cannot read config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise EdgeshrinkError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_build_config(raw, str(path))


def build_from_config(config: BuildConfig, out_dir: Path, cache_dir: Path) -> EvaluationResult:
    """Train, prune, export, quantize and measure exactly as the search trial did.

    ``cache_dir`` keeps the teacher, decoded images and the latency gauge between builds. The
    gauge is calibrated afresh, so latency is on this machine's scale, not the search's.
    """
    profile = load_profile(config.profile)
    spec = DataSpec.parse(config.dataset, config.data_dir)
    data = load_data(spec, config.candidate.input_resolution, cache_dir / "data")
    teacher = load_teacher(parse_teacher(config.teacher), data, cache_dir, seed=config.teacher_seed)
    gauge = prepare_gauge(profile, cache_dir, data.val.x[:1].numpy())
    return evaluate_candidate(config.candidate, data, teacher, profile, out_dir,
                              config.training, seed=config.seed, gauge=gauge)
