"""What the pydantic schemas of edgeshrink's YAML files share: unknown keys refused in one error,
today's wording for a bad value, and a ValidationError turned into one line.

pydantic's own report spans several lines, one per failing key; the CLI prints an
``EdgeshrinkError`` as one line, so :func:`validate` keeps the first error and writes it as
``<file>: '<field path>' <what is wrong>`` (``stages[1].stride``, ``choices.kernel``).
"""

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from edgeshrink.core.errors import EdgeshrinkError

Model = TypeVar("Model", bound=BaseModel)
_MAPPING_ERRORS = ("model_type", "model_attributes_type", "dataclass_type", "dict_type")


def problem(message: str, at: str | None = None) -> PydanticCustomError:
    """What is wrong with the value being validated; ``at``: its path, where the validator is
    a whole-file check that cannot take the path from pydantic's location."""
    return PydanticCustomError("edgeshrink", "{why}",
                               {"why": message} | ({} if at is None else {"at": at}))


def as_is(message: str) -> PydanticCustomError:
    """A message that already says where the problem is (Candidate's own errors)."""
    return PydanticCustomError("edgeshrink_as_is", "{why}", {"why": message})


def refuse_unknown(data: Any, known: Iterable[str]) -> Any:
    """Refuse every key outside ``known`` in one error that lists the known ones too."""
    known = list(known)
    if isinstance(data, dict):
        extra = sorted(set(data) - set(known), key=str)
        if extra:
            raise PydanticCustomError("edgeshrink_unknown", "unknown field(s) {extra}",
                                      {"extra": str(extra), "known": str(known)})
    return data


def said(message: str, *, below: bool = True) -> WrapValidator:
    """Any failure of the annotated value reads as ``message`` (``{got}``: the value's repr).

    ``below=False`` rephrases only pydantic's failures of the value itself (not a list, not a
    mapping); those of its items, which name their own field, and unknown keys pass through.
    """
    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if below or any(not e["loc"] and not e["type"].startswith("edgeshrink")
                            for e in exc.errors()):
                raise problem(message.replace("{got}", repr(value))) from None
            raise
    return WrapValidator(wrap)


class Section(BaseModel):
    """A mapping of a file whose keys are all known: others are refused, all named at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        return refuse_unknown(data, cls.model_fields)


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location as the file's field path: ``('stages', 1, 'kernel')`` ->
    ``stages[1].kernel``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def one_line(exc: ValidationError, source: str) -> str:
    """The first error of ``exc`` as ``<source>: '<field path>' <problem>``."""
    err = exc.errors()[0]
    kind, ctx = err["type"], err.get("ctx") or {}
    path = ctx.get("at", field_path(err["loc"]))
    if kind == "edgeshrink_as_is":
        return f"{source}: {ctx['why']}"
    if kind == "edgeshrink_unknown":
        where = f"'{path}'" if path else "the top level"
        return f"{source}: unknown field(s) {ctx['extra']} in {where}; known: {ctx['known']}"
    if kind == "missing":
        return f"{source}: missing field '{path}'"
    if kind == "edgeshrink":
        return f"{source}: '{path}' {ctx['why']}" if path else f"{source}: {ctx['why']}"
    if kind in _MAPPING_ERRORS:
        if not path:
            return f"{source}: expected a mapping at the top level"
        return f"{source}: '{path}' must be a mapping; got {err['input']!r}"
    text = err["msg"].removeprefix("Input ")  # pydantic's own: "Input should be ..."
    return f"{source}: '{path}' {text[:1].lower()}{text[1:]}; got {err['input']!r}"


def validate(model: type[Model], raw: Any, source: str,
             error: type[EdgeshrinkError] = EdgeshrinkError) -> Model:
    """``raw`` (a loaded file) as ``model``, or ``error`` with one line naming file and field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(one_line(exc, source)) from None
