"""Which precision each part of an exported student runs at (mixed precision), by ONNX node name.

The exporter names every node by its module path (``/blocks/blocks.3/conv/conv.0/conv.0.0/Conv``),
so a plan is a map from node-name prefixes to precisions; the same prefixes pick the modules that
quantization-aware training fake-quantizes (``fake_quant.qat_bits``). No torch import here: the
quantizer runs where only onnxruntime is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.vocabulary import PRECISIONS

# Weight bits each precision fake-quantizes to during QAT; None = stays float.
WEIGHT_BITS: dict[str, int | None] = {"fp32": None, "fp16": None, "int8": 8, "int4": 4}
assert set(WEIGHT_BITS) == set(PRECISIONS)
REDUCED_INT8_BITS = 7  # int8 weights with onnxruntime's reduce_range
# Largest integer of each weight grid (symmetric, per channel: scale = max|w| / qmax).
# onnxruntime's reduced int8 range is [-64, 64], not [-63, 63].
WEIGHT_QMAX: dict[int, int] = {8: 127, REDUCED_INT8_BITS: 64, 4: 7}


def _check(precision: str, what: str) -> str:
    if precision not in PRECISIONS:
        raise EdgeshrinkError(f"{what} must be one of {list(PRECISIONS)}; got {precision!r}")
    return precision


@dataclass(frozen=True)
class QuantPlan:
    """``default`` covers every node no prefix matches (stem, head, pool, classifier)."""

    default: str
    prefixes: dict[str, str] = field(default_factory=dict)  # ONNX node-name prefix -> precision
    act_symmetric: bool = False  # int8 activations: symmetric int8 (True) or uint8 (False)
    # int8 weights on 7 bits (hardware_profiles.cpu: for x86 kernels that saturate without it)
    reduce_range: bool = False

    def __post_init__(self) -> None:
        _check(self.default, "quantization plan field 'default'")
        for prefix, precision in self.prefixes.items():
            _check(precision, f"quantization plan prefix {prefix!r}")

    @property
    def precisions(self) -> frozenset[str]:
        """Every precision the plan names (some may match no node)."""
        return frozenset({self.default, *self.prefixes.values()})

    def precision_of(self, node_name: str) -> str:
        """The precision of the longest prefix that matches, else ``default``."""
        best = max((p for p in self.prefixes if node_name.startswith(p)), key=len, default=None)
        return self.default if best is None else self.prefixes[best]

    def weight_bits(self, precision: str) -> int | None:
        """Bits of the weight grid a precision stores (None: float)."""
        bits = WEIGHT_BITS[precision]
        return REDUCED_INT8_BITS if bits == 8 and self.reduce_range else bits


def plan_for(stage_precisions_of_blocks: list[str], default: str,
             act_symmetric: bool = False, reduce_range: bool = False) -> QuantPlan:
    """Block k of ``Student.blocks`` runs at ``stage_precisions_of_blocks[k]``; the rest at
    ``default``. Blocks at ``default`` need no prefix, which keeps the plan short."""
    prefixes = {f"/blocks/blocks.{k}/": _check(p, f"precision of block {k}")
                for k, p in enumerate(stage_precisions_of_blocks) if p != default}
    return QuantPlan(default, prefixes, act_symmetric, reduce_range)
