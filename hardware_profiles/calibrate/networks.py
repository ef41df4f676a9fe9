"""Random whole networks from the default search space's vocabulary, for calibration.

Single operators and blocks show what each kernel costs alone; networks sampled from the space
the search explores show the kernels in the mixes and channel counts the search will ask about
(stage boundaries between float and int8, SE gates, odd pruned widths). nn-Meter samples its
kernel configurations the same way. Built with ``onnx_builder`` from a seed, so a device with
only onnxruntime and numpy builds the same bytes; the choices mirror
``spaces/default_space.yaml`` (kept in step by a test, not by import: YAML and torch may be
missing on the device).
"""

from __future__ import annotations

import numpy as np
import onnx

from edgeshrink.core.channel_rounding import make_divisible
from edgeshrink.hardware_profiles.onnx_builder import GraphBuilder

# (channels, stride, block types) per stage, as in spaces/default_space.yaml.
STAGES = ((16, 1, ("ir", "ds", "skip")), (24, 2, ("ir", "ds")), (32, 2, ("ir", "ds")),
          (64, 1, ("ir", "ds", "skip")))
STEM_CHANNELS, HEAD_CHANNELS, RESOLUTION, CLASSES = 16, 128, 16, 10
KERNELS, EXPANSIONS, ACTIVATIONS = (3, 5, 7), (1, 3, 4, 6), ("relu6", "hswish")
WIDTHS = (0.5, 0.75, 1.0)
CHANNEL_ROUND = 16  # channel pruning keeps multiples of the host's channel block


def stage_prefix(stage: int) -> str:
    return f"stage{stage}/"


def space_network(seed: int) -> tuple[onnx.ModelProto, str, dict[str, str], bool]:
    """One sampled network and its quantization plan: (model, default precision of the stem and
    head, precision by stage prefix, symmetric int8 activations)."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder(np.random.default_rng(seed + 1))
    width = float(rng.choice(WIDTHS))
    pruned = rng.random() < 0.3  # channel pruning: the expanded channels, rounded
    stem = make_divisible(STEM_CHANNELS * width)
    x = g.conv("input", 1, stem, 3, act="relu6")
    cin = stem
    precisions: dict[str, str] = {}
    for i, (channels, stride, types) in enumerate(STAGES):
        kind = str(rng.choice(types))
        precisions[stage_prefix(i)] = str(rng.choice(("fp32", "int8")))
        if kind == "skip":
            continue
        kernel, expansion = int(rng.choice(KERNELS)), int(rng.choice(EXPANSIONS))
        se, act = bool(rng.random() < 0.5), str(rng.choice(ACTIVATIONS))
        cout = make_divisible(channels * width)
        g.scope = stage_prefix(i)
        for d in range(int(rng.integers(1, 3))):
            s = stride if d == 0 else 1
            if kind == "ds":
                x = g.separable(x, cin, cout, s, kernel, se, act)
            else:
                keep = float(rng.uniform(0.3, 1.0)) if pruned else 1.0
                mid = cin * expansion
                if keep < 1.0 and expansion > 1:
                    mid = max(CHANNEL_ROUND, int(np.ceil(mid * keep / CHANNEL_ROUND))
                              * CHANNEL_ROUND)
                x = g.inverted_residual(x, cin, cout, expansion, s, kernel, se, act, mid)
            cin = cout
        g.scope = ""
    head = make_divisible(HEAD_CHANNELS * max(1.0, width))
    x = g.conv(x, cin, head, 1, act="relu6")
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    model = g.model([1, 1, RESOLUTION, RESOLUTION], g.linear(x, head, CLASSES), [1, CLASSES])
    default = str(rng.choice(("fp32", "int8")))
    return model, default, precisions, bool(rng.random() < 0.5)
