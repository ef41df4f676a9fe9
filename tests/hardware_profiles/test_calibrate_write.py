"""calibrate's profile writer (tomli_w): what it writes loads back to the same profile."""

import tomllib

from edgeshrink.hardware_profiles.calibrate import Fit, KernelFit, profile_toml
from edgeshrink.hardware_profiles.cpu import CpuInfo
from edgeshrink.hardware_profiles.registry import OP_CLASSES, load_profile, parse_profile

NAME = 'Board "Ærø" \\ rev 2 – 試作'
DESCRIPTION = 'a "quoted" C:\\path\\ on a naïve board, ünïcödé ✓'
CPU = CpuInfo(model='ARM "Cortex-A76" \\ Ångström', arch="aarch64", int8_features=("dotprod",))


def _fit() -> Fit:
    gmacs = {(c, "fp32", "aligned"): 10.0 * (i + 1) for i, c in enumerate(OP_CLASSES)}
    gmacs |= {(c, "int8", "aligned"): 30.0 * (i + 1) for i, c in enumerate(OP_CLASSES[:3])}
    gmacs |= {("conv", "fp32", "unaligned"): 7.5, ("pointwise", "int8", "generic"): 12.25,
              ("depthwise", "fp32", "generic"): 1.0 / 3}
    return Fit(per_inference_us=12.3456789, per_layer_us={"fp32": 1.5, "int8": 2.0},
               gmacs=gmacs, bandwidth_gbps=1000.0, mape=0.05,
               channel_block={"fp32": 8, "int8": 16})


def _kernels() -> KernelFit:
    return KernelFit(per_inference_us=9.87654321, vector=16, mape=0.03, kernels={
        "nchwc.Conv conv fp32": {"layer_us": 0.5, "mac_ns": 0.0012345678, "pixel_ns": 0.0},
        "QLinearConv pointwise int8": {"layer_us": 1.25, "mac_ns": 1e-4, "weight_ns": 3.0}})


def test_names_with_quotes_backslashes_and_non_ascii_round_trip(tmp_path):
    text = profile_toml(_fit(), NAME, DESCRIPTION, "cpu", 43, 0.5, _kernels(), cpu=CPU)
    out = tmp_path / "mine.toml"
    out.write_text(text, encoding="utf-8")
    raw = tomllib.loads(text)
    assert raw["name"] == NAME and raw["description"] == DESCRIPTION
    assert raw["calibrated_on"] == {"cpu": CPU.model, "arch": "aarch64",
                                    "int8_features": ["dotprod"]}
    profile = load_profile(str(out))
    assert profile == parse_profile(raw, str(out))
    assert (profile.name, profile.description, profile.calibrated_on) == (NAME, DESCRIPTION, CPU)
    assert text.startswith("# Calibrated by `edgeshrink profile calibrate`")
    assert "43 micro-benchmark timings" in text  # the header comments survive tomli_w


def test_numbers_are_the_fit_to_six_digits():
    raw = tomllib.loads(profile_toml(_fit(), "p", "d", "cpu", 1, None, _kernels(), cpu=CPU))
    assert raw["sources"][0].startswith("[1] fitted") and len(raw["sources"]) == 1  # no gauge
    assert raw["compute"] == {"fp32": 60.0, "int8": 90.0}
    assert raw["overhead"] == {"per_layer_us": 1.5, "per_inference_us": 9.87654,
                               "per_layer_us_int8": 2.0}
    efficiency = raw["efficiency"]
    assert efficiency["conv"] == 0.166667 and efficiency["pooling"] == 1.0
    assert efficiency["unaligned"] == {"conv": 0.125}
    assert {c: efficiency["int8"][c] for c in OP_CLASSES[:3]} == {
        "conv": 0.333333, "depthwise": 0.666667, "pointwise": 1.0}
    assert efficiency["generic"] == {"depthwise": 0.00555556}
    # int8 has no unaligned data of its own: conv falls back to its aligned share; the generic
    # table names each base class (depthwise) plus its own (pointwise).
    assert efficiency["int8"]["unaligned"] == {"conv": 0.333333}
    assert efficiency["int8"]["generic"] == {"depthwise": 0.666667, "pointwise": 0.136111}
    assert raw["layout"] == {"channel_block_fp32": 8, "channel_block_int8": 16,
                             "fusion": "onnxruntime_layout"}
    assert raw["kernels"]["channel_vector"] == 16
    assert raw["kernels"]["nchwc.Conv conv fp32"] == {"layer_us": 0.5, "mac_ns": 0.00123457,
                                                      "pixel_ns": 0.0}
