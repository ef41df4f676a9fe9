"""Candidate families: searched students and compressed copies of the user's own model. A stored
candidate dict says its family (absent: a student, as every candidate before families was)."""

from __future__ import annotations

from typing import Any

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.candidate import Candidate

FAMILIES = ("student", "base")
AnyCandidate = Candidate | BaseCandidate


def family_of(candidate: AnyCandidate) -> str:
    return getattr(candidate, "family", "student")


def candidate_from_dict(d: dict[str, Any]) -> AnyCandidate:
    """A student or a base candidate, by the dict's ``family``."""
    if not isinstance(d, dict):
        raise EdgeshrinkError(f"candidate must be a mapping; got {type(d).__name__}")
    family = d.get("family", "student")
    if family == "base":
        return BaseCandidate.from_dict(d)
    if family != "student":
        raise EdgeshrinkError(f"candidate field 'family' must be one of {list(FAMILIES)}; "
                              f"got {family!r}")
    return Candidate.from_dict({k: v for k, v in d.items() if k != "family"})
