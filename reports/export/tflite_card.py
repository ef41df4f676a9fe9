"""The model card's LiteRT section: which ``.tflite`` files ship, what they score, how to run them,
or why there are none."""

from __future__ import annotations

from typing import Any

_KIND = {"fp32": "fp32", "int8": "int8, full integer (int8 input, output and kernels)"}


def tflite_file_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per shipped ``.tflite`` for the card's file list."""
    return [f"- `{f['file']}`: LiteRT model, {_KIND.get(f['precision'], f['precision'])}."
            for f in metrics.get("tflite", {}).get("files", [])]


def tflite_text(metrics: dict[str, Any], data: Any, res: int) -> str:
    """The card's section; empty where ``.tflite`` was not asked for."""
    info = metrics.get("tflite")
    if info is None:
        return ""
    if "refused" in info:
        return f"""
## No LiteRT (.tflite) file

`--format tflite` was asked for, but no `.tflite` was written: {info['refused']}. The ONNX
export above is complete.
"""
    rows = "\n".join(
        f"| `{f['file']}` | {f['precision']} | {f['size_bytes']:,} bytes | "
        f"{f['validation_accuracy']:.4f} | {f['test_accuracy']:.4f} | {f['check']} |"
        for f in info["files"])
    first = info["files"][-1]["file"]  # the int8 file where there is one
    extra = "".join(f"\n{note}.\n" for note in
                    ([f"No int8 `.tflite`: {info['no_int8']}"] if info.get("no_int8") else [])
                    + list(info.get("notes", [])))
    return f"""
## Run it with LiteRT (.tflite)

Converted by {info['converter']} from the trial's PyTorch model: its architecture with
{info['weights']}. Each file was run in LiteRT's interpreter on the validation split before it
was written ({metrics['validation_images']} images) and once on the test split.

| file | precision | size | validation accuracy | test accuracy | checked against |
|---|---|---|---|---|---|
{rows}
{extra}
Input `[1, {data.in_channels}, {res}, {res}]` (batch 1, channels first, as in PyTorch), same
preprocessing; output `[1, {data.num_classes}]` logits. The int8 file takes and returns int8:
quantize the input with its scale and zero point (its argmax needs no dequantizing).

```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path="{first}")
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
x = np.zeros((1, {data.in_channels}, {res}, {res}), np.float32)  # one preprocessed image
if inp["dtype"] != np.float32:  # full-integer file
    scale, zero = inp["quantization"]
    x = np.clip(np.round(x / scale) + zero, -128, 127).astype(inp["dtype"])
interpreter.set_tensor(inp["index"], x)
interpreter.invoke()
print(interpreter.get_tensor(out["index"]).argmax(axis=1))
```
"""
