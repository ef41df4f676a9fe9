"""LiteRT on the evaluators side: the torch twin of calibration's ONNX graphs, the .tflite files
of micro-benchmarks and trials (converted as the precision plan asks, then timed), and the
search's one-line refusal without the [tflite] extra. Nothing here depends on this CPU's speed."""

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.onnx_twin import OnnxTwin
from edgeshrink.hardware_profiles.calibrate import MicroBench, build_micro_model
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.cli import main
from edgeshrink.spaces.quantization.plan import QuantPlan

BENCHES = [MicroBench("ir_block", 16, 16, 3, 6, 1, True, "hswish"),
           MicroBench("ds_block", 16, 16, 5, 1, 2, True, "relu6"),
           MicroBench("net", 12, 16, 5, 4, 1, True, "hswish"), MicroBench("matmul", 128, 128),
           MicroBench("pooling", 64, 8), MicroBench("elementwise", 16, 16),
           MicroBench("space_net", 0, 16, seed=2)]


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("bench", BENCHES, ids=lambda b: b.label)
def test_twin_computes_what_onnxruntime_computes(bench):
    model = build_micro_model(bench, 4)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).normal(size=dims).astype(np.float32)
    with torch.no_grad():
        twin = OnnxTwin(model).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(twin, _ort(model, x), rtol=1e-4, atol=1e-4)


def test_twin_refuses_an_unknown_operator_by_name():
    node = helper.make_node("Softmax", ["input"], ["out"], name="soft")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("input", 1, [1, 4])],
                              [helper.make_tensor_value_info("out", 1, [1, 4])])
    with pytest.raises(EdgeshrinkError, match="soft: Softmax has no torch twin"):
        OnnxTwin(helper.make_model(graph))


def test_search_with_host_litert_refuses_without_the_extra(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    code = main(["search", "--profile", "host-litert", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--profile host-litert needs LiteRT (ai_edge_litert is not installed)" in err[0]
    assert 'pip install -c constraints.txt "edgeshrink[tflite]"' in err[0]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- with the [tflite] extra

litert = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("ai_edge_litert", "litert_torch")),
    reason="needs the [tflite] extra")


def _ops(path) -> dict[str, int]:
    from edgeshrink.evaluators.litert import TfliteRunner

    runner = TfliteRunner(path)
    ops: dict[str, int] = {}
    for op in runner.interpreter._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    return {"in": runner.input.dtype, "out": runner.output.dtype, **ops}


@litert
def test_micro_benchmarks_convert_by_their_precision_and_time(tmp_path):
    from edgeshrink.evaluators.litert import TfliteRunner
    from edgeshrink.evaluators.litert_micro import tflite_micro_models
    from edgeshrink.hardware_profiles.gauge import write_gauge_model
    from edgeshrink.hardware_profiles.measure import calibrate_gauge, measure_latency
    from edgeshrink.hardware_profiles.profile_terms import Measurement

    hswish = MicroBench("net", 8, 16, 3, 3, 1, False, "hswish")
    built = tflite_micro_models(tmp_path, ("fp32", "int8"), (hswish,))
    by = {b.precision: b for b in built}
    assert sorted(by) == ["fp32", "int8", "int8_back", "int8_front"]  # one int8 scheme in LiteRT
    assert all(b.path.suffix == ".tflite" and b.graph.suffix == ".onnx" for b in built)
    x = np.random.default_rng(2).normal(size=(1, 1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(TfliteRunner(by["fp32"].path).logits(x),
                               _ort(onnx.load(by["fp32"].graph), x), rtol=1e-4, atol=1e-4)
    ops = {p: _ops(b.path) for p, b in by.items()}
    io = {p: (o["in"], o["out"]) for p, o in ops.items()}
    assert io == {"fp32": (np.float32, np.float32), "int8": (np.int8, np.int8),
                  "int8_front": (np.int8, np.float32), "int8_back": (np.float32, np.int8)}
    # Converted from the float graph, as a trial's torch model is: one HARD_SWISH per
    # activation (onnxruntime's quantizer split them in the int8 ONNX files).
    assert ops["int8"]["HARD_SWISH"] == ops["fp32"]["HARD_SWISH"] > 0
    settings = Measurement(warmup_runs=2, min_runs=20, min_seconds=0.0, runtime="litert")
    gauge = calibrate_gauge(write_gauge_model(tmp_path / "gauge.onnx", 1, 16), x, settings, 1)
    r = measure_latency(by["int8"].path, x, settings, gauge)
    assert r.runs >= 20 and r.median_ms > 0 and r.gauge_ratio == pytest.approx(
        r.median_ms / gauge.ms)


@litert
def test_calibrate_with_litert_writes_a_profile_that_predicts_with_its_reading(tmp_path):
    from edgeshrink.evaluators.litert_micro import tflite_micro_models
    from edgeshrink.hardware_profiles.calibrate import calibrate
    from edgeshrink.hardware_profiles.profile_terms import Measurement

    settings = Measurement(warmup_runs=2, min_runs=20, min_seconds=0.0, drift_correction="none")
    profile, fit = calibrate(tmp_path / "dev.toml", "dev", precisions=("fp32",),
                             settings=settings, runtime="litert", build=tflite_micro_models,
                             benchmarks=(MicroBench("pointwise", 16, 8, 1),
                                         MicroBench("depthwise", 16, 8, 3)))
    assert profile.latency_method == "predicted" and profile.fusion == "litert"
    assert set(profile.kernels) == {"Conv pointwise fp32", "Conv depthwise fp32"}
    assert "LiteRT micro-benchmarks" in profile.sources[0]
    assert profile.description == "dev: calibrated with LiteRT"


def _student_source(plan: QuantPlan):
    from edgeshrink.evaluators.timed_file import TorchSource
    from edgeshrink.spaces.blocks import build_student
    from edgeshrink.spaces.bn_folding import fold_batchnorm
    from edgeshrink.spaces.candidate import Candidate, parse_arch

    width, stages = parse_arch("w0.5:ir_k3_e4_se_hs_r1_s1_c16,ds_k5_r1_s2_c24")
    cand = Candidate(width_mult=width, stages=stages, temperature=4.0, alpha=0.5, sparsity=0.0,
                     precision="fp32")
    torch.manual_seed(0)
    model = fold_batchnorm(build_student(cand, 1, 10).eval())
    x = torch.randn(8, 1, 16, 16)
    return TorchSource(model, plan, x, x[:1])


@litert
def test_a_trial_times_the_tflite_its_plan_asks_for(tmp_path):
    from edgeshrink.evaluators.timed_file import timed_file

    litert_profile, host = load_profile("host-litert"), load_profile("host")
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"onnx")
    plans = {"fp32": QuantPlan("fp32"), "int8": QuantPlan("int8"),
             "mixed": QuantPlan("fp32", {"/blocks/blocks.1/": "int8"})}
    files = {}
    for name, plan in plans.items():
        source = _student_source(plan)
        assert timed_file(artifact, host, source) == artifact
        files[name] = _ops(timed_file(artifact, litert_profile, source,
                                      tmp_path / f"{name}.tflite"))
    assert (files["fp32"]["in"], files["fp32"]["out"]) == (np.float32, np.float32)
    assert (files["int8"]["in"], files["int8"]["out"]) == (np.int8, np.int8)
    # Only the second block at int8: float in and out, converted around that block.
    mixed = files["mixed"]
    assert (mixed["in"], mixed["out"]) == (np.float32, np.float32)
    assert mixed.get("QUANTIZE", 0) >= 1 and mixed.get("DEQUANTIZE", 0) >= 1
    assert "QUANTIZE" not in files["fp32"]
    with pytest.raises(EdgeshrinkError, match="none was given"):
        timed_file(artifact, litert_profile, None)
