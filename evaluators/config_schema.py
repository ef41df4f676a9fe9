"""``config.yaml`` (an export's recipe) as a pydantic model, checked before ``edgeshrink build``
trains anything; every error is one line naming the file and the field.

The candidate (either family) is read by ``candidate_from_dict``; a student's by
``Candidate.from_dict``, which knows every older candidate schema; the
training budget by the ``TrainSettings`` dataclass itself, so a new setting needs no edit here.
Top-level keys beyond these are ignored, as they always were; ``training`` refuses unknown ones.
"""

from dataclasses import fields
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.spaces.families import AnyCandidate, candidate_from_dict
from edgeshrink.spaces.file_schema import as_is, refuse_unknown, said

CONFIG_SCHEMA = 1  # the edgeshrink_config number this version writes and reads


def _candidate(raw: dict[Any, Any]) -> AnyCandidate:
    try:
        return candidate_from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise as_is(f"invalid 'candidate': {exc}") from None
    except EdgeshrinkError as exc:  # already names the candidate field
        raise as_is(str(exc)) from None


def _known_settings(raw: Any) -> Any:
    return refuse_unknown(raw, (f.name for f in fields(TrainSettings)))


Text = Annotated[str, BeforeValidator(str)]  # any scalar, read as its text
PathText = Annotated[str | None, Strict(), said("must be a path")]
Seed = Annotated[int, Strict(), said("must be an integer")]
Record = Annotated[dict[str, Any], BeforeValidator(lambda raw: raw or {})]  # null: empty


class ConfigFile(BaseModel):
    """The keys of ``config.yaml``, in the order ``BuildConfig.to_dict`` writes them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Checked even when absent: a file without it is most likely not an edgeshrink config.
    edgeshrink_config: Annotated[Literal[CONFIG_SCHEMA], said(
        f"must be {CONFIG_SCHEMA} (is this an edgeshrink config.yaml?), got {{got}}"
    )] = Field(None, validate_default=True)
    source: Record = {}  # study and trial it came from
    dataset: Text
    data_dir: PathText = None
    teacher: PathText = None
    candidate: Annotated[dict[Any, Any], Strict(), AfterValidator(_candidate)]  # a Candidate
    training: Annotated[TrainSettings, BeforeValidator(_known_settings)]
    seed: Seed
    teacher_seed: Seed = 0
    profile: Text
    stage_groups: Annotated[list[dict[str, Any]], BeforeValidator(lambda raw: raw or [])] = []
    pruning_plan: Annotated[list[Any] | None, Strict()] = None  # base family (build.plan_from_text)
    expected: Record = {}  # metrics of the exported model
