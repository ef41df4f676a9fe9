"""Re-scoring a trial's artifact: the file a search measured must still score what it stored.

Scoring belongs beside the code that scored the file the first time, so the export (reports)
only decides which trial to ship and writes the bundle. A trial is plain values here (its
number and user attributes), never an Optuna object. Heavy imports wait until a file is really
scored, so importing this module stays cheap for the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu

if TYPE_CHECKING:
    from edgeshrink.evaluators.data.splits import DataSplits

MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "weights.pt"


class ArtifactMismatch(EdgeshrinkError):
    """The file no longer scores the stored accuracy: changed, or not the one measured."""


@dataclass(frozen=True)
class Rescored:
    data: DataSplits  # the study's splits at the candidate's resolution
    validation_accuracy: float
    test_accuracy: float


def artifact_dir(number: int, stored: str | None, run_dir: Path | str | None) -> Path:
    """Directory holding trial ``number``'s ``model.onnx``.

    ``stored`` is the trial's ``artifact`` attribute (absolute where the search ran); when that
    file is gone, e.g. the run directory moved, ``run_dir/trials/NNNNN`` is tried.
    """
    candidates = [Path(stored).parent] if stored else []
    if run_dir is not None:
        candidates.append(Path(run_dir) / "trials" / f"{number:05d}")
    for d in candidates:
        if (d / MODEL_FILE).is_file():
            return d
    raise EdgeshrinkError(
        f"the artifact of trial {number} is missing (looked in "
        f"{', '.join(str(d) for d in candidates) or 'nowhere: no artifact recorded'}); "
        "pass the --run-dir of the search that made it"
    )


def rescore_trial(model_dir: Path, number: int, attrs: Mapping[str, Any],
                  stored_accuracy: float, setup: Mapping[str, Any],
                  cache_dir: Path | None = None) -> Rescored:
    """Score ``model_dir``'s model on the study's validation and test splits.

    ``attrs`` are the trial's user attributes (candidate, accuracy_method, cpu). The validation
    score must equal ``stored_accuracy`` exactly, in the arithmetic the trial was scored in
    (trials from before ``accuracy_method`` was recorded were scored by the host's kernels), or
    :class:`ArtifactMismatch` is raised before anything else runs. ``weights.pt`` must load
    safely into the recipe's architecture. Test images, never seen by the search, come last.
    """
    from edgeshrink.evaluators.data.sources import load_data, spec_from_setup
    from edgeshrink.evaluators.onnx_eval import onnx_accuracy
    from edgeshrink.spaces.families import candidate_from_dict

    candidate = candidate_from_dict(attrs["candidate"])
    data = load_data(spec_from_setup(dict(setup)), candidate.input_resolution, cache_dir)
    method = attrs.get("accuracy_method", "host")
    model = model_dir / MODEL_FILE
    val_acc = onnx_accuracy(model, data.val.x.numpy(), data.val.y.numpy(), method=method)
    if val_acc != stored_accuracy:
        raise ArtifactMismatch(
            f"trial {number}'s {MODEL_FILE} scores validation accuracy {val_acc:.6f} "
            f"({method} arithmetic), but the study stored {stored_accuracy:.6f}: the artifact "
            "was changed or is not the one measured" + _cpu_hint(method, attrs.get("cpu"))
        )
    trial_model(model_dir, candidate, data)  # weights.pt must load into the recipe's network
    test_acc = onnx_accuracy(model, data.test.x.numpy(), data.test.y.numpy(), method=method)
    return Rescored(data, val_acc, test_acc)


def trial_model(model_dir: Path, candidate: Any, data: DataSplits) -> Any:
    """The trial's float network (student or base family) with ``weights.pt`` loaded: pruned
    shapes as saved, BatchNorm not folded."""
    import torch

    from edgeshrink.evaluators.base_model import base_architecture
    from edgeshrink.spaces.base_model.candidate import BaseCandidate
    from edgeshrink.spaces.blocks import build_student
    from edgeshrink.spaces.pruning.state import load_pruned_state_dict

    architecture = (base_architecture(candidate, data) if isinstance(candidate, BaseCandidate)
                    else build_student(candidate, data.in_channels, data.num_classes))
    load_pruned_state_dict(architecture, torch.load(model_dir / WEIGHTS_FILE, weights_only=True))
    return architecture


def _cpu_hint(method: str, cpu: Mapping[str, Any] | None) -> str:
    """Host arithmetic differs between CPUs: name the one that scored the trial if it differs."""
    if method != "host" or not cpu or CpuInfo.from_dict(dict(cpu)).same_kind(host_cpu()):
        return ""
    return (f" (it was scored on {cpu.get('model', '?')}, this is {host_cpu().model}: "
            "export on a machine of the same kind)")
