"""``--model SPEC``: which user model to compress, and how to rebuild it as an ``nn.Module``.

Two forms, both rebuildable and so prunable structurally:

- ``ARCH:WEIGHTS``: a torchvision classification architecture and its state dict;
- ``module.path:factory`` or ``module.path:factory:WEIGHTS``: a callable in an importable module
  that returns the model (this runs the user's code, as any ``import`` does).

A TorchScript or ONNX file is a frozen graph: it can be a teacher but not the base of a search.
"""

from __future__ import annotations

import importlib.util
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgeshrink.core.errors import EdgeshrinkError

_NAME_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")  # dotted Python names


@dataclass(frozen=True)
class ModelSpec:
    """Plain data: stored with the study and in every base candidate's ``config.yaml``."""

    form: str  # "torchvision" or "factory"
    weights: str | None  # absolute path of a state dict; None: the factory's own weights
    arch: str | None = None  # torchvision architecture
    factory: str | None = None  # "module.path:callable"

    @property
    def label(self) -> str:
        """The ``--model`` value that names this model again."""
        head = self.arch if self.form == "torchvision" else self.factory
        return f"{head}:{self.weights}" if self.weights else str(head)

    @property
    def name(self) -> str:
        """Short name for plots and tables: the architecture or the factory's name."""
        return str(self.arch if self.form == "torchvision" else self.factory).rsplit(":", 1)[-1]

    def to_dict(self) -> dict[str, str | None]:
        return {"form": self.form, "arch": self.arch, "factory": self.factory,
                "weights": self.weights}

    @classmethod
    def from_dict(cls, raw: dict) -> ModelSpec:
        if not isinstance(raw, dict) or raw.get("form") not in ("torchvision", "factory"):
            raise EdgeshrinkError(f"model spec must have form 'torchvision' or 'factory'; "
                                  f"got {raw!r}")
        return cls(raw["form"], raw.get("weights"), raw.get("arch"), raw.get("factory"))


def torchvision_archs() -> list[str]:
    import torchvision  # deferred: only a spec that names an architecture needs it

    return torchvision.models.list_models(module=torchvision.models)


def _weights_file(path: str, text: str, option: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise EdgeshrinkError(f"{option} {text!r}: state dict not found: {p.resolve()}")
    return str(p.resolve())


def parse_model_spec(text: str, option: str = "--model") -> ModelSpec:
    """Read ``--model``; every refusal is one line that says what to pass instead."""
    text = text.strip()
    if Path(text).expanduser().is_file():
        kind = "a TorchScript" if zipfile.is_zipfile(Path(text).expanduser()) else "an ONNX"
        raise EdgeshrinkError(
            f"{option} {text!r} is {kind}-style file: a frozen graph cannot be pruned "
            "structurally; pass it as --teacher, and give --model as ARCH:WEIGHTS (e.g. "
            "resnet18:weights.pt) or module.path:factory[:WEIGHTS]"
        )
    head, sep, rest = text.partition(":")
    if not sep or not head:
        raise EdgeshrinkError(
            f"{option} {text!r}: expected ARCH:WEIGHTS (e.g. resnet18:weights.pt) or "
            "module.path:factory[:WEIGHTS]"
        )
    if "." not in head and head in torchvision_archs():
        if not rest:
            raise EdgeshrinkError(f"{option} {text!r}: give the state dict, e.g. {head}:weights.pt")
        return ModelSpec("torchvision", _weights_file(rest, text, option), arch=head)
    if "." not in head and importlib.util.find_spec(head) is None:
        raise EdgeshrinkError(
            f"{option} {text!r}: {head!r} is neither a torchvision classification architecture "
            "(see torchvision.models.list_models()) nor an importable module; for your own "
            "class write module.path:factory[:WEIGHTS]"
        )
    factory, sep2, weights = rest.partition(":")
    if not _NAME_RE.match(head) or not _NAME_RE.match(factory):
        raise EdgeshrinkError(
            f"{option} {text!r}: expected module.path:factory[:WEIGHTS], e.g. "
            "mypkg.nets:make_model:weights.pt"
        )
    return ModelSpec("factory", _weights_file(weights, text, option) if sep2 and weights else None,
                     factory=f"{head}:{factory}")
