"""The names every layer shares: precisions, block options, pruning methods and importances.

Only names live here; their realisations are registries in ``spaces`` (``blocks.BLOCKS``,
``pruning.PRUNING_METHODS``, ``quantization.QUANTIZERS``), which check themselves against these.
Kept free of torch so that candidates, spaces and profiles can be validated without it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "int8", "int4")  # int4: 4-bit weights, int8 activations
PRUNING_NAMES = ("global_magnitude", "layer_magnitude", "channel", "semi_2_4")
IMPORTANCE_NAMES = ("l1", "l2", "taylor")


@dataclass(frozen=True)
class BlockKind:
    """What a block type's token carries: ``expands`` -> an expansion, ``empty`` -> no module."""

    expands: bool = False
    empty: bool = False


# Block type token -> its kind. ``blocks.BLOCKS`` holds a factory for every non-empty one.
BLOCK_KINDS: dict[str, BlockKind] = {
    "ir": BlockKind(expands=True),  # MobileNetV2 inverted residual
    "ds": BlockKind(),  # MobileNetV1 depthwise separable
    "skip": BlockKind(empty=True),  # the stage contributes no block (stride-1 stages only)
}
KERNELS = (3, 5, 7)
EXPANSIONS = (1, 3, 4, 6)
# Activation name -> its suffix in a stage token; the empty suffix marks the default.
ACTIVATION_TOKENS: dict[str, str] = {"relu6": "", "hswish": "hs"}
