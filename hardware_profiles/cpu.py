"""The scoring machine's CPU and whether its int8 kernels can saturate.

On x86 CPUs with AVX2 (or AVX-512BW) but no VNNI, onnxruntime's u8 x s8 kernels multiply with
``vpmaddubsw``, which adds each pair of products into a signed 16-bit lane and saturates there
(oneDNN "Nuances of int8 computations", PyTorch #103646). Full-range int8 weights then lose
accuracy on this machine that the same file keeps on a VNNI server, an ARM board with dotprod or
an NPU. Weights on 7 bits ([-64, 64], onnxruntime's reduced range) keep every pair sum within
int16 (2 x 255 x 64 = 32,640), which is why PyTorch's x86 backend and NNCF's CPU target reduce
the range.

Standard library only, so a script can load this file by path where edgeshrink is not
installed (``benchmarks/int8_kernels_vs_reference.py score`` on another machine).

No /proc/cpuinfo (macOS, Windows): the architecture decides; an x86 CPU of unknown features is
assumed to saturate, as the 7-bit remedy is safe everywhere.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> the name we report; the int8 dot-product features that decide whether
# 8-bit kernels accumulate pairs in 16 bits (AVX2 / AVX-512BW alone) or straight into 32 bits.
INT8_FEATURES: dict[str, str] = {
    "avx2": "avx2",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "amx_int8": "amx_int8",
    "asimddp": "dotprod",  # ARMv8.2 SDOT/UDOT
    "i8mm": "i8mm",  # ARMv8.6 SMMLA
}
_PAIRWISE_16BIT = frozenset({"avx2", "avx512bw"})
_DOT_32BIT = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str  # platform.machine(), lower case
    int8_features: tuple[str, ...]  # names from INT8_FEATURES, in that order

    @property
    def is_x86(self) -> bool:
        return self.arch in _X86

    @property
    def int8_saturates(self) -> bool:
        """True where onnxruntime's 8-bit kernels add u8 x s8 product pairs in int16."""
        if not self.is_x86:
            return False  # ARM's SDOT / SMLAL accumulate in 32 bits
        features = set(self.int8_features)
        if features & _DOT_32BIT:
            return False
        return bool(features & _PAIRWISE_16BIT) or not features

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "int8_features": list(self.int8_features),
                "int8_saturates": self.int8_saturates}

    def describe(self) -> str:
        feats = ", ".join(self.int8_features) or "no int8 dot-product features found"
        kernels = ("int8 kernels can saturate (u8 x s8 pairs in int16)" if self.int8_saturates
                   else "int8 kernels accumulate in int32")
        return f"{self.model} ({self.arch}; {feats}): {kernels}"

    def same_kind(self, other: CpuInfo) -> bool:
        """Same model and int8 features: a kernel table fitted on one describes the other."""
        return (self.model, self.arch, self.int8_features) == (
            other.model, other.arch, other.int8_features)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CpuInfo:
        return cls(str(raw.get("model", "unknown")), str(raw.get("arch", "unknown")),
                   tuple(str(f) for f in raw.get("int8_features", ())))


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """Read ``/proc/cpuinfo`` text (x86 ``flags``, ARM ``Features``) of the first CPU."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    features = tuple(name for flag, name in INT8_FEATURES.items() if flag in flags)
    return CpuInfo(model or platform.processor() or "unknown", arch.lower(), features)


@functools.cache
def host_cpu() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    arch = platform.machine() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        return parse_cpuinfo(cpuinfo.read_text(errors="replace"), arch)
    return CpuInfo(platform.processor() or "unknown", arch.lower(), ())
