"""Names of the block options a space may offer; the blocks themselves are in ``blocks``.

Kept free of torch so that candidates and spaces can be parsed and validated without it.
"""

from __future__ import annotations

from dataclasses import dataclass


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
