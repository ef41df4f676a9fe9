"""Does `phone-cortex-a75` (a Pixel 3 big core) reproduce the published MobileNetV3 latencies?

Exports torchvision's MobileNetV3-Large and -Small (random weights: latency does not depend on
them) at 224x224 to ONNX, makes the int8 QDQ copy with edgeshrink's own recipe, and prints the
profile's prediction next to the Pixel 3 figures from the tensorflow/models slim README. The
profile is fitted to these and five more; ``profile_holdout.py`` checks every predicted profile
on the networks left out of its fit.

    .venv/bin/python benchmarks/phone_profile.py
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

from edgeshrink.hardware_profiles import load_profile
from edgeshrink.hardware_profiles.latency_model import predict_latency
from edgeshrink.spaces.quantization.onnx_qdq import int8_static

PUBLISHED_MS = {  # Pixel 3, single large core
    ("mobilenet_v3_large", "fp32"): 44.0, ("mobilenet_v3_large", "int8"): 32.0,
    ("mobilenet_v3_small", "fp32"): 14.4, ("mobilenet_v3_small", "int8"): 10.7,
}


def main() -> None:
    profile = load_profile("phone-cortex-a75")
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arch in ("mobilenet_v3_large", "mobilenet_v3_small"):
            fp32 = Path(tmp) / f"{arch}.onnx"
            model = getattr(torchvision.models, arch)(weights=None).eval()
            torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(fp32), dynamo=False,
                              opset_version=17)
            int8 = Path(tmp) / f"{arch}_int8.onnx"
            calib = np.random.default_rng(0).normal(size=(4, 3, 224, 224)).astype(np.float32)
            int8_static(fp32, int8, calib)
            for precision, path in (("fp32", fp32), ("int8", int8)):
                pred = predict_latency(path, profile)
                rows.append((arch, precision, PUBLISHED_MS[(arch, precision)], pred.total_ms,
                             len(pred.layers)))
    print("| network | precision | published ms (Pixel 3) | predicted ms | error | layers |")
    print("|---|---|---|---|---|---|")
    for arch, precision, published, predicted, layers in rows:
        print(f"| {arch} | {precision} | {published:.1f} | {predicted:.2f} | "
              f"{predicted / published - 1:+.1%} | {layers} |")


if __name__ == "__main__":
    main()
