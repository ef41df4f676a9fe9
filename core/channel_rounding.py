"""MobileNet's channel rounding, torch-free: the search's students, the supernet and the
calibration networks a device builds without torch must all agree on channel counts."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 4) -> int:
    """Round channels the way MobileNet does, so width multipliers give friendly sizes."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def se_channels(channels: int) -> int:
    """Squeeze-excitation's inner width: a quarter, rounded to a multiple of 8 (MobileNetV3)."""
    return make_divisible(channels / 4, 8)
