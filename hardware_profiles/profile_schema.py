"""The hardware-profile file format as pydantic models: declared once, it checks a file and
names what is wrong (registry words the first error as one line). Strict: TOML types are kept.
Tables of fixed keys refuse unknown ones; [memory], [overhead], [sparsity], [energy] and the top
level ignore them, as they always have. Schema (version 2), every number sourced in the file:

    schema_version = 2
    name, description, kind ("cpu" | "gpu" | "npu" | "mcu")
    latency_method = "measured" (time the file here, [measurement] runtime) | "predicted" (model)
    sources = ["[1] where a number came from", ...]
    [compute]      peak GMAC/s per precision the device runs: fp32, fp16, int8, int4
    [memory]       bandwidth_gbps; optional ram_bytes (peak activations), storage_bytes (weights)
    [overhead]     per_layer_us, per_inference_us; optional per_layer_us_<precision>
    [efficiency]   share of peak per operator class (conv, depthwise, pointwise, matmul,
                   elementwise, pooling); a sub-table per precision overrides some classes;
                   optional [efficiency.unaligned] / [efficiency.<precision>.unaligned]: shares
                   for layers whose input channels are off the channel block; likewise
                   [efficiency.generic]: layers whose weights are dequantized at run time
    [layout]       optional: channel_block (kernels pad channels to a multiple of it; default
                   1), channel_block_<precision> where a precision's kernels differ;
                   fusion = "qdq" (default: every QDQ pattern runs as an int8 kernel) or
                   "onnxruntime" (the device runs onnxruntime: read the graph after its rewrites,
                   unfused Quantize/Dequantize nodes cost time; see graph_layers) or
                   "onnxruntime_layout" (the same after this machine's layout rewrites too)
                   or "litert" (LiteRT's converter: "qdq" with only ReLU / ReLU6 fused)
    [kernels]      optional, with fusion = "onnxruntime_layout" or "litert": a linear cost per
                   runtime kernel, fitted by calibrate (kernel_costs): channel_vector = N, then
                   "<kernel> <class> <precision>" = {layer_us, mac_ns, mac_half_ns,
                   mac_single_ns, pixel_ns, channel_ns, weight_ns}, each >= 0; other layers
                   use the roofline
    [sparsity]     support = "none" | "2:4" | "unstructured"; min_sparsity for unstructured
    [energy]       optional: pj_per_byte and pj_per_mac.<precision>
    [measurement]  for "measured" profiles: how to time (threads, runs, drift correction) and
                   runtime = "onnxruntime" (default: the .onnx file) or "litert" (a .tflite
                   converted from the same model, LiteRT's XNNPACK delegate)
    [calibrated_on] optional, written by calibrate: cpu (model name), arch, int8_features
                   (hardware_profiles.cpu): the machine its timings came from
    [published]    optional, predicted profiles: figures = {precision = how many published
                   whole-network latencies on the device its numbers were fitted to
                   (hardware_profiles/published/)}, holdout_error = {precision = median
                   absolute error predicting each one left out of the fit}, note
"""

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.functional_validators import AfterValidator, WrapValidator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from edgeshrink.core.vocabulary import PRECISIONS
from edgeshrink.hardware_profiles.cpu import INT8_FEATURES
from edgeshrink.hardware_profiles.profile_terms import (  # the vocabulary, re-exported
    DRIFT_CORRECTIONS,
    FUSIONS,
    KERNEL_FUSIONS,
    KERNEL_TERMS,
    KINDS,
    LATENCY_METHODS,
    OP_CLASSES,
    RUNTIMES,
    SCHEMA_VERSION,
    SPARSITY_SUPPORT,
    Measurement,
)


def _problem(text: str, whole: bool = False) -> PydanticCustomError:
    """What is wrong with the value at the error's location, or (``whole``, for checks across
    tables) a message that names its field itself."""
    return PydanticCustomError("profile" if whole else "profile_value", "{text}", {"text": text})


# Wrap validators: the type check first, then the range, quoting the value as the file wrote it.
def _share(value: Any, handler: ValidatorFunctionWrapHandler) -> float:
    share = handler(value)
    if not 0 < share <= 1:
        raise _problem(f"must be a share in (0, 1], got {value!r}")
    return share


def _block(value: Any, handler: ValidatorFunctionWrapHandler) -> int:
    block = handler(value)
    if not 1 <= block <= 256:
        raise _problem(f"must be an integer in [1, 256], got {value!r}")
    return block


def _kernel_name(key: str) -> str:
    parts = key.split(" ")
    if len(parts) != 3 or not parts[0]:
        raise _problem(f'must be named "<kernel> <class> <precision>", got {key!r}')
    if parts[1] not in OP_CLASSES:
        raise _problem(f"must name its operator class, one of {list(OP_CLASSES)}, got "
                       f"{parts[1]!r}")
    return key


Share = Annotated[float, WrapValidator(_share)]
Block = Annotated[int, WrapValidator(_block)]  # channels; a kernel's vector width at most
Positive = Annotated[float, Field(gt=0)]
Precision = Literal[PRECISIONS]
KernelName = Annotated[str, AfterValidator(_kernel_name)]  # its precision: ProfileFile checks


class _Table(BaseModel):  # fixed keys: a typo is an error
    model_config = ConfigDict(strict=True, extra="forbid")


class _Open(BaseModel):  # unknown keys ignored, as they always were here
    model_config = ConfigDict(strict=True, extra="ignore")


class _Memory(_Open):
    bandwidth_gbps: Positive
    ram_bytes: Annotated[int, Field(gt=0)] | None = None
    storage_bytes: Annotated[int, Field(gt=0)] | None = None


class _Overhead(_Open):
    per_layer_us: float
    per_inference_us: float
    per_layer_us_fp32: float | None = None
    per_layer_us_fp16: float | None = None
    per_layer_us_int8: float | None = None
    per_layer_us_int4: float | None = None


class _Shares(_Table):
    """Shares of peak by operator class (OP_CLASSES): a table of overrides names only some."""

    conv: Share | None = None
    depthwise: Share | None = None
    pointwise: Share | None = None
    matmul: Share | None = None
    elementwise: Share | None = None
    pooling: Share | None = None

    def given(self) -> dict[str, float]:
        return {c: v for c in OP_CLASSES if (v := getattr(self, c)) is not None}


class _PrecisionShares(_Shares):
    unaligned: _Shares | None = None
    generic: _Shares | None = None


class _Efficiency(_PrecisionShares):
    conv: Share
    depthwise: Share
    pointwise: Share
    matmul: Share
    elementwise: Share
    pooling: Share
    fp32: _PrecisionShares | None = None
    fp16: _PrecisionShares | None = None
    int8: _PrecisionShares | None = None
    int4: _PrecisionShares | None = None


class _Layout(_Table):  # like _Overhead and _Efficiency: a field per PRECISIONS entry
    fusion: Literal[FUSIONS] = "qdq"
    channel_block: Block | None = None
    channel_block_fp32: Block | None = None
    channel_block_fp16: Block | None = None
    channel_block_int8: Block | None = None
    channel_block_int4: Block | None = None


class _Kernels(_Table):
    """channel_vector, then "<kernel> <class> <precision>" = {term = cost}: extra keys."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[KernelName, dict[Literal[KERNEL_TERMS], Annotated[float, Field(ge=0)]]]
    channel_vector: Block = 16


class _Sparsity(_Open):
    support: Literal[SPARSITY_SUPPORT] = "none"
    min_sparsity: float = 0.0


class _Energy(_Open):
    pj_per_byte: float | None = None
    pj_per_mac: dict[Precision, Positive] = {}


_TIMING = Measurement()


class _Measurement(_Table):
    intra_op_threads: Annotated[int, Field(ge=1)] = _TIMING.intra_op_threads
    warmup_runs: int = _TIMING.warmup_runs
    min_runs: Annotated[int, Field(ge=1)] = _TIMING.min_runs
    min_seconds: float = _TIMING.min_seconds
    drift_correction: Literal[DRIFT_CORRECTIONS] = _TIMING.drift_correction
    runtime: Literal[RUNTIMES] = _TIMING.runtime


class _CalibratedOn(_Table):
    cpu: str
    arch: str
    int8_features: list[Literal[tuple(INT8_FEATURES.values())]] = []


class _Published(_Table):
    figures: dict[Precision, Annotated[int, Field(ge=0)]] = {}
    holdout_error: dict[Precision, Annotated[float, Field(ge=0)]] = {}
    note: str = ""


class ProfileFile(_Open):
    """One profile file, checked; registry.parse_profile turns it into a Profile."""

    schema_version: int
    name: str
    description: str
    kind: Literal[KINDS]
    latency_method: Literal[LATENCY_METHODS]
    sources: list[Any]
    compute: dict[Precision, Positive]
    memory: _Memory
    overhead: _Overhead
    efficiency: _Efficiency
    layout: _Layout = Field(default_factory=_Layout)
    kernels: _Kernels = Field(default_factory=_Kernels)
    sparsity: _Sparsity = Field(default_factory=_Sparsity)
    energy: _Energy = Field(default_factory=_Energy)
    measurement: _Measurement = Field(default_factory=_Measurement)
    calibrated_on: _CalibratedOn | None = None
    published: _Published | None = None

    @field_validator("schema_version")
    @classmethod
    def _this_version(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise _problem(f"is {version}: the file is from a newer edgeshrink than this one "
                           f"(schema {SCHEMA_VERSION}); upgrade edgeshrink to read it")
        if version != SCHEMA_VERSION:
            raise _problem(f"must be {SCHEMA_VERSION}, got {version}")
        return version

    @field_validator("compute")
    @classmethod
    def _some_precision(cls, compute: dict[str, float]) -> dict[str, float]:
        if not compute:
            raise _problem("must name at least one precision")
        return compute

    @field_validator("calibrated_on", mode="before")
    @classmethod
    def _empty_is_none(cls, table: Any) -> Any:
        return None if table == {} else table

    @model_validator(mode="after")
    def _runs_what_it_tunes(self) -> Self:
        """Precision-specific numbers only for the precisions [compute] says the device runs,
        and [kernels] only where they can be matched: on a reading that names kernels."""
        runs = list(self.compute)

        def check(precision: str, label: str) -> None:
            if precision not in runs:
                raise _problem(f"field '{label}' must be one of {runs}, got {precision!r}", True)

        for p in PRECISIONS:
            tuned = {f"layout.channel_block_{p}": getattr(self.layout, f"channel_block_{p}"),
                     f"efficiency.{p}": getattr(self.efficiency, p),
                     f"overhead.per_layer_us_{p}": getattr(self.overhead, f"per_layer_us_{p}")}
            for label, value in tuned.items():
                if value is not None:
                    check(p, label)
        fusion = self.layout.fusion
        if (self.kernels.model_fields_set or self.kernels.model_extra) and (
                fusion not in KERNEL_FUSIONS):
            raise _problem(f"field 'kernels' needs layout.fusion = one of {list(KERNEL_FUSIONS)} "
                           f"(kernel names come from those readings), got {fusion!r}", True)
        for key in self.kernels.model_extra or {}:
            check(key.split(" ")[2], f'kernels."{key}" (precision)')
        return self
