"""The README shipped with an exported model."""

from __future__ import annotations

from typing import Any

from edgeshrink.hardware_profiles.int8_arithmetic import ACCURACY_METHODS, weight_range_text
from edgeshrink.reports.export.tflite_card import tflite_file_lines, tflite_text
from edgeshrink.spaces.base_model.candidate import BaseCandidate
from edgeshrink.spaces.candidate import Candidate


def model_card(metrics: dict[str, Any], candidate: Candidate | BaseCandidate, data: Any,
               setup: dict[str, Any]) -> str:
    """A short README for the exported model: what it is, how it was found, how to run it."""
    res = candidate.input_resolution
    teacher = f"your teacher `{setup['teacher']}`" if setup.get("teacher") else "a larger CNN"
    rows = [
        ("validation accuracy (search)", f"{metrics['validation_accuracy']:.4f} "
                                         f"({metrics['validation_images']} images)"),
        ("test accuracy (held out)", f"{metrics['test_accuracy']:.4f} "
                                     f"({metrics['test_images']} images)"),
        ("latency, median / p90", f"{metrics.get('latency_ms', float('nan')):.4f} / "
                                  f"{metrics.get('latency_p90_ms', float('nan')):.4f} ms on "
                                  f"profile `{setup['profile']}`, batch 1, "
                                  f"{metrics.get('threads', 1)} thread(s)"),
        *([("energy per inference", f"{metrics['energy_mj']:.4g} mJ (predicted)")]
          if metrics.get("energy_mj") is not None else []),
        ("file size", f"{metrics.get('size_bytes', 0):,} bytes "
                      f"({metrics.get('size_gzip_bytes', 0):,} gzipped)"),
        ("parameters (non-zero)", f"{metrics.get('params', 0):,} "
                                  f"({metrics.get('nonzero_params', 0):,})"),
        ("MACs per image", f"{metrics.get('macs', 0):,}"),
    ]
    if "int8" in metrics.get("quantization", {}).get("realised", {}):
        rows.append(("int8 weights", weight_range_text(candidate.reduce_range)))
    if metrics.get("accuracy_method"):
        cpu = metrics.get("cpu") or {}
        rows.append(("accuracy computed by", f"{ACCURACY_METHODS[metrics['accuracy_method']]}"
                     + (f", on {cpu.get('model', '?')}" if cpu else "")))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    if isinstance(candidate, BaseCandidate):
        what = _base_text(candidate, teacher) + f" (Picked: {metrics['picked']}.)"
    else:
        what = f"""A {candidate.precision} MobileNet-style network, `{candidate.arch}`, found by
edgeshrink (picked: {metrics['picked']}). It was distilled from {teacher} (temperature
{candidate.temperature:g}, alpha {candidate.alpha:g}{_hint_text(candidate)}),
{_pruning_text(candidate)}, and exported to ONNX {_precision_text(candidate)}."""
    return f"""# {data.name} classifier, trial {metrics['trial']} of study `{metrics['study']}`

{what}
{_measured_text(metrics)}

| metric | value |
|---|---|
{table}

Preprocess each image as `(pixel / {data.pixel_scale:g} - {data.mean:.6f}) / {data.std:.6f}`,
resized bilinearly to {res}x{res}.
{_onnx_text(metrics, data, res)}{tflite_text(metrics, data, res)}
## Files

{_files_text(metrics)}
- `config.yaml`: every choice; `edgeshrink build config.yaml --out DIR` retrains it from scratch.
- `metrics.json`: all metrics, tool versions and where it came from.
"""


def _measured_text(metrics: dict[str, Any]) -> str:
    if "onnx" in metrics.get("formats", ["onnx"]):
        return "`model.onnx` is the exact file whose accuracy and latency were measured."
    return ("The search measured the trial's `model.onnx` (not shipped: this export asked for "
            "`--format tflite`); the figures below are that file's.")


def _onnx_text(metrics: dict[str, Any], data: Any, res: int) -> str:
    if "onnx" not in metrics.get("formats", ["onnx"]):
        return ""
    return f"""
## Run it with onnxruntime

Input: float32 `[batch, {data.in_channels}, {res}, {res}]`; output: `[batch, {data.num_classes}]`
logits.

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
x = np.zeros((1, {data.in_channels}, {res}, {res}), np.float32)  # your preprocessed images
logits = session.run(None, {{session.get_inputs()[0].name: x}})[0]
print(logits.argmax(axis=1))
```
"""


def _files_text(metrics: dict[str, Any]) -> str:
    lines = []
    if "onnx" in metrics.get("formats", ["onnx"]):
        lines.append("- `model.onnx`: the deployable model, as measured.")
    lines += tflite_file_lines(metrics)
    lines.append("""- `weights.pt`: the PyTorch state dict
  (`torch.load("weights.pt", weights_only=True)`), before quantization; after channel pruning
  load it with `edgeshrink.spaces.pruning.state.load_pruned_state_dict(model, state)` into the
  unpruned architecture (`build_student(...)`, or your own model for a compressed copy of it).""")
    return "\n".join(lines)


_PRUNING_TEXT = {
    "global_magnitude": "magnitude-pruned to {s:.0%} of its weights (one global threshold)",
    "layer_magnitude": "magnitude-pruned to {s:.0%} of the weights of every layer",
    "channel": "channel-pruned ({s:.0%} of the channels removed, {i} importance)",
    "semi_2_4": "pruned to the 2:4 semi-structured pattern (2 of every 4 weights zero)",
}


def _pruning_text(candidate: Candidate) -> str:
    if candidate.sparsity == 0 and candidate.pruning != "semi_2_4":
        return "not pruned"
    return _PRUNING_TEXT[candidate.pruning].format(s=candidate.sparsity, i=candidate.importance)


def _precision_text(candidate: Candidate) -> str:
    stages = candidate.stage_precisions
    if not stages or set(stages) == {candidate.precision}:
        kind = candidate.precision
    else:
        kind = f"mixed precision (stages {', '.join(stages)}; stem and head {candidate.precision})"
    extra = []
    if {candidate.precision, *stages} & {"int8", "int4"}:
        extra.append("symmetric" if candidate.act_symmetric else "asymmetric")
        extra[-1] += " int8 activations"
        if candidate.qat:
            extra.append("quantization-aware fine-tuning")
    return f"at {kind}" + (f" ({', '.join(extra)})" if extra else "")


def _hint_text(candidate: Candidate) -> str:
    return f", feature hints weight {candidate.hint_weight:.2f}" if candidate.hint_weight else ""


def _base_text(candidate: BaseCandidate, teacher: str) -> str:
    scales = (f", scaled per stage group by {', '.join(f'{x:g}' for x in candidate.group_scales)}"
              if candidate.group_scales else "")
    pruned = (f"channel-pruned ({candidate.channel_ratio:.0%} of each group's channels removed"
              f"{scales}, {candidate.importance} importance), fine-tuned by distillation from "
              f"{teacher} for {candidate.finetune_epochs} epoch(s)"
              if candidate.channel_ratio > 0 else "not pruned")
    return (f"A compressed copy of your model `{candidate.model.label}` (`{candidate.arch}`): "
            f"{pruned}, and exported to ONNX {_precision_text(candidate)}. `config.yaml` lists "
            "the channels kept per stage group and every removed channel.")
