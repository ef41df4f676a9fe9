"""A small valid profile file for tests that vary one field of it."""

from __future__ import annotations

from pathlib import Path

from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.registry import Profile

GOOD = """
schema_version = 2
name = "dev"
description = "a test device"
kind = "cpu"
latency_method = "predicted"
sources = ["[1] made up for a test"]
[compute]
fp32 = 1.0
int8 = 4.0
[memory]
bandwidth_gbps = 1.0
[overhead]
per_layer_us = 2.0
per_inference_us = 10.0
[efficiency]
conv = 0.5
depthwise = 0.25
pointwise = 0.5
matmul = 0.5
elementwise = 0.5
pooling = 0.5
"""


def write_profile(tmp_path: Path, text: str = GOOD) -> Profile:
    path = tmp_path / "dev.toml"
    path.write_text(text)
    return load_profile(str(path))
