"""Quantization: the precision plan, fake-quant training, fp16 simulation and ONNX QDQ export.

Imports nothing heavy, so a device calibrating its profile can use the ONNX side alone."""
