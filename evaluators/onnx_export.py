"""Export a torch model to ONNX with a dynamic batch axis."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def export_onnx(model: nn.Module, path: Path, in_channels: int, resolution: int) -> None:
    model.eval()
    dummy = torch.zeros(1, in_channels, resolution, resolution)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but exact and fast for these plain CNNs;
        # silence its deprecation notice so it does not flood every trial's output.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
