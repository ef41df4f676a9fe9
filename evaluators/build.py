"""``config.yaml``: the full recipe of one exported model, and rebuilding the model from it.

An export ships the trained weights, but a user who wants to retrain on new data, audit the
result or change one choice needs the recipe: every choice of the candidate, the data set, the
training budget and the seeds. ``build_from_config`` runs the same pipeline a search trial ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeshrink.core.atomic import staged_directory
from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.base_model import plan_from_text, plan_to_text
from edgeshrink.evaluators.config_schema import CONFIG_SCHEMA, ConfigFile
from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.pipeline import EvaluationResult, evaluate_candidate
from edgeshrink.evaluators.teacher.load import load_teacher, parse_teacher
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.measure import prepare_gauge
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.spaces.families import AnyCandidate
from edgeshrink.spaces.file_schema import validate


@dataclass(frozen=True)
class BuildConfig:
    candidate: AnyCandidate
    dataset: str
    training: TrainSettings
    seed: int  # the trial's seed: initialisation, batch order, fine-tune
    teacher_seed: int
    profile: str
    source: dict[str, Any] = field(default_factory=dict)  # study and trial it came from
    expected: dict[str, Any] = field(default_factory=dict)  # metrics of the exported model
    data_dir: str | None = None  # root of a torchvision data set, as the search used it
    teacher: str | None = None  # the --teacher of the search; None: trained here
    # base family: the channels each pruning step removed, replayed instead of ranked again
    pruning_plan: list[list[tuple[str, list[int]]]] | None = None
    # base family: per stage group, its units, precision and output channels kept / total
    stage_groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edgeshrink_config": CONFIG_SCHEMA,
            "source": self.source,
            "dataset": self.dataset,
            **({"data_dir": self.data_dir} if self.data_dir else {}),
            **({"teacher": self.teacher} if self.teacher else {}),
            "candidate": self.candidate.to_dict(),
            "training": self.training.recorded(),
            "seed": self.seed,
            "teacher_seed": self.teacher_seed,
            "profile": self.profile,
            **({"stage_groups": self.stage_groups} if self.stage_groups else {}),
            **({"pruning_plan": plan_to_text(self.pruning_plan)} if self.pruning_plan else {}),
            "expected": self.expected,
        }

    def to_yaml(self) -> str:
        header = ("# edgeshrink model recipe: `edgeshrink build config.yaml --out DIR`\n"
                  "# retrains and re-exports this model; change a choice to build a variant.\n")
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse_build_config(raw: Any, source: str = "config") -> BuildConfig:
    """Validate a loaded config (``config_schema``); every problem names the file and the field."""
    c = validate(ConfigFile, raw, source)
    return BuildConfig(candidate=c.candidate, dataset=c.dataset, training=c.training, seed=c.seed,
                       teacher_seed=c.teacher_seed, profile=c.profile, source=c.source,
                       expected=c.expected, data_dir=c.data_dir, teacher=c.teacher,
                       pruning_plan=plan_from_text(c.pruning_plan) if c.pruning_plan else None,
                       stage_groups=list(c.stage_groups))


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
    teacher = load_teacher(parse_teacher(config.teacher), data, cache_dir, seed=config.teacher_seed,
                           settings=config.training)  # its augmentation and batch too
    gauge = prepare_gauge(profile, cache_dir, data.val.x[:1].numpy())
    return evaluate_candidate(config.candidate, data, teacher, profile, out_dir,
                              config.training, seed=config.seed, gauge=gauge,
                              replay=config.pruning_plan)


def build_into(config: BuildConfig, out_dir: Path, cache_dir: Path,
               force: bool = False) -> EvaluationResult:
    """Build into ``out_dir`` as one transaction: a failed build leaves what was there."""
    with staged_directory(out_dir, force) as stage:
        result = build_from_config(config, stage / "model", cache_dir)
        for item in (stage / "model").iterdir():
            item.rename(stage / item.name)
        (stage / "model").rmdir()
    return result
