"""Search spaces shipped by name: ``--space mcu-96`` instead of a path to a YAML file.

Every ``<name>.yaml`` in this folder is the preset ``name``, so adding a preset is adding a file
(and a line in the README). Imports only the standard library: the CLI lists the names in its
``--help`` and checks ``--space`` before anything heavy loads.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from edgeshrink.core.errors import EdgeshrinkError

_SUFFIX = ".yaml"

PRESETS: dict[str, Traversable] = {
    f.name.removesuffix(_SUFFIX): f
    for f in sorted(resources.files(__name__).iterdir(), key=lambda f: f.name)
    if f.name.endswith(_SUFFIX)
}

__all__ = ["PRESETS", "resolve_space"]


def resolve_space(text: str | Path) -> Traversable:
    """The file a ``--space`` value names: a preset's packaged YAML, else the user's file.

    A preset name wins over a file of the same name in the working directory (write
    ``./mcu-96`` for the file). A value that looks like a path (a suffix or a folder in it)
    keeps the file errors it always had; any other unknown word lists the presets.
    """
    name = str(text)
    if name in PRESETS:
        return PRESETS[name]
    path = Path(text)
    if path.is_file():
        return path
    if path.exists():
        raise EdgeshrinkError(f"space file {name!r} is not a file")
    if path.suffix or len(path.parts) > 1:
        raise EdgeshrinkError(f"space file {name!r} does not exist")
    raise EdgeshrinkError(f"unknown space {name!r}: neither a preset ({', '.join(PRESETS)}) "
                          "nor an existing space file")
