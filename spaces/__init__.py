"""What can be chosen, and how a choice is realised. Importing this package does not load torch."""

from edgeshrink.spaces.candidate import Candidate, StageSpec, format_arch, parse_arch
from edgeshrink.spaces.errors import EdgeshrinkError
from edgeshrink.spaces.space import SearchSpace, load_space

__all__ = [
    "Candidate",
    "EdgeshrinkError",
    "SearchSpace",
    "StageSpec",
    "format_arch",
    "load_space",
    "parse_arch",
]
