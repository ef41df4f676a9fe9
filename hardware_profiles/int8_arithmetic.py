"""Which int8 arithmetic a trial's accuracy stands for, and which weight range it ships with.

- A **predicted** profile (an ARM board, a phone, a TPU, a microcontroller) computes int8 with
  32-bit accumulation: its accuracy is the file's reference arithmetic (onnxruntime with graph
  optimizations off, so QDQ runs as dequantize -> float op -> quantize), whatever CPU scores it.
  Weights use the full 8-bit range.
- A **measured** profile (``host``) is this machine: accuracy is what its own int8 kernels
  compute. Where they saturate (x86 AVX2 without VNNI, see :mod:`.cpu`), int8 weights are
  quantized to 7 bits so the shipped file keeps its accuracy here and everywhere else.
- A profile measured with **LiteRT** (``host-litert``) times a .tflite twin whose XNNPACK int8
  kernels accumulate in 32 bits (they widen to 16 bits before multiplying, so they do not
  saturate as onnxruntime's AVX2 kernels do): its ONNX file is scored in the reference
  arithmetic, with full 8-bit weights, like a predicted profile's.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeshrink.hardware_profiles.cpu import CpuInfo, host_cpu
from edgeshrink.hardware_profiles.registry import Profile

# accuracy_method -> what it means; evaluators.onnx_eval maps each to onnxruntime options.
ACCURACY_METHODS: dict[str, str] = {
    "reference": "QDQ in reference arithmetic (onnxruntime, graph optimizations off): "
                 "int8 values, exact int32-range sums, no kernel saturation",
    "host": "this machine's onnxruntime kernels (graph optimizations on)",
}


@dataclass(frozen=True)
class Int8Arithmetic:
    accuracy_method: str  # key of ACCURACY_METHODS
    reduce_range: bool  # int8 weights on 7 bits ([-64, 64]) instead of 8
    cpu: CpuInfo  # the machine that scores the file


def int8_arithmetic(profile: Profile, cpu: CpuInfo | None = None) -> Int8Arithmetic:
    cpu = cpu or host_cpu()
    if profile.latency_method == "predicted" or profile.measurement.runtime != "onnxruntime":
        return Int8Arithmetic("reference", False, cpu)
    return Int8Arithmetic("host", cpu.int8_saturates, cpu)


def weight_range_text(reduce_range: bool) -> str:
    """For model cards: the weight range of an int8 file and the CPUs it is safe on."""
    if reduce_range:
        return ("int8 weights use 7 bits ([-64, 64]): u8 x s8 product pairs fit in 16 bits, so "
                "the accuracy holds on every CPU, x86 AVX2 without VNNI included")
    return ("int8 weights use the full 8-bit range ([-127, 127]): exact on CPUs with VNNI "
            "(avx512_vnni, avx_vnni), ARM with dotprod, GPUs and NPUs; on x86 AVX2 without VNNI "
            "onnxruntime's int8 kernels can saturate and lose accuracy (re-export from a search "
            "on such a host, which quantizes weights to 7 bits)")
