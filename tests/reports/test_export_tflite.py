"""`export --format tflite`: LiteRT files converted from a trial's torch model, run in LiteRT's
interpreter with the accuracies the issue asks for, and every refusal in one line with nothing
half-written."""

import json
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from edgeshrink.evaluators import litert
from edgeshrink.evaluators import tflite_export as te
from edgeshrink.evaluators.onnx_eval import onnx_predict
from edgeshrink.reports import export as ex
from edgeshrink.reports.dashboard.app import export_message
from edgeshrink.reports.dashboard.data import StudySource
from edgeshrink.reports.export.tflite_card import tflite_text
from edgeshrink.reports.selector import select
from edgeshrink.search.cli import main
from edgeshrink.search.runner import SearchOptions, run_search
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.families import candidate_from_dict
from edgeshrink.spaces.pruning.state import load_pruned_state_dict


def _text(component) -> str:
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None) or "")


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- refused before any work


def test_formats_parse_and_an_unknown_one_is_refused_before_the_study_is_read(tmp_path, capsys):
    assert te.parse_formats("onnx") == ("onnx",)
    assert te.parse_formats("tflite, ONNX") == ("onnx", "tflite")
    out = tmp_path / "out"
    code = main(["export", "--study", "nothing", "--run-dir", str(tmp_path / "run"),
                 "--trial", "0", "--format", "onnx,pdf", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "unknown export format 'pdf'" in line and "onnx, tflite" in line
    assert not out.exists() and not (tmp_path / "run").exists()


def test_tflite_without_the_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # `import litert_torch` now fails
    out = tmp_path / "out"
    code = main(["export", "--study", "nothing", "--run-dir", str(tmp_path / "run"),
                 "--trial", "0", "--format", "onnx,tflite", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "--format tflite needs LiteRT" in line
    assert 'pip install -c constraints.txt "edgeshrink[tflite]"' in line
    assert not out.exists()
    # The library and the dashboard refuse the same way, before touching the study or --out.
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(litert.LiteRTMissing, match="edgeshrink\\[tflite\\]"):
        ex.export_trial(study, 0, out, formats=("onnx", "tflite"))
    shown = export_message(SimpleNamespace(study=study, run_dir=tmp_path), 0, tmp_path / "x",
                           formats=["tflite"])
    assert shown.id == "export-error" and "edgeshrink[tflite]" in _text(shown)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    no_format = export_message(SimpleNamespace(study=study, run_dir=tmp_path), 0,
                               tmp_path / "x", formats=[])
    assert no_format.id == "export-error" and "at least one export format" in _text(no_format)


def test_model_card_section_for_coral_a_missing_int8_and_a_refusal(monkeypatch):
    monkeypatch.setattr(te.shutil, "which", lambda name: None)
    notes = te.compiler_notes("coral-edge-tpu", has_int8=True)
    assert len(notes) == 1 and "`edgetpu_compiler` takes" in notes[0]
    assert "this machine cannot run that compiler" in notes[0] and te.INT8_FILE in notes[0]
    assert te.compiler_notes("raspberry-pi-4", has_int8=True) == ()
    data = SimpleNamespace(in_channels=1, num_classes=10)
    files = [{"file": te.FP32_FILE, "precision": "fp32", "size_bytes": 51536,
              "validation_accuracy": 0.9777, "test_accuracy": 0.9611, "check": "agrees"},
             {"file": te.INT8_FILE, "precision": "int8", "size_bytes": 44792,
              "validation_accuracy": 0.9749, "test_accuracy": 0.9583, "check": "within"}]
    metrics = {"validation_images": 359, "tflite": {
        "files": files, "weights": "w", "converter": "litert-torch 0.10.0", "notes": notes}}
    card = tflite_text(metrics, data, 16)
    for f in files:
        assert f"`{f['file']}` | {f['precision']} | {f['size_bytes']:,} bytes | " \
               f"{f['validation_accuracy']:.4f} | {f['test_accuracy']:.4f}" in card
    assert "edgetpu_compiler" in card and 'model_path="model_int8.tflite"' in card
    fp16 = SimpleNamespace(precision="fp16", stage_precisions=("fp16", "fp16"))
    metrics["tflite"] = {"files": files[:1], "weights": "w", "converter": "c",
                         "no_int8": te.int8_reason(fp16)}
    assert "No int8 `.tflite`: the trial is fp16, not int8" in tflite_text(metrics, data, 16)
    metrics["tflite"] = {"refused": "the LiteRT converter rejected operator aten.foo.default"}
    assert "no `.tflite` was written: the LiteRT converter rejected operator aten.foo" \
           in tflite_text(metrics, data, 16)
    assert tflite_text({}, data, 16) == ""


# ---------------------------------------------------------------- a real default search


@pytest.fixture(scope="module")
def tflite_study(tmp_path_factory, teacher_dir):
    """Three trials of the default space: seed 2 draws an fp32 trial, an all-int8 one and a
    mixed int8 one with quantization-aware fine-tuning."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert.interpreter")
    run_dir = tmp_path_factory.mktemp("tflite") / "run"
    shutil.copytree(teacher_dir, run_dir / "teacher")
    study = run_search(SearchOptions(study="tfl", run_dir=run_dir, trials=3, seed=2,
                                     sampler="random", epochs=1, finetune_epochs=1,
                                     progress=False, report=False))
    return study, run_dir


def _trial(study, wanted):
    for t in study.trials:
        c = candidate_from_dict(t.user_attrs["candidate"])
        if wanted({c.precision, *c.stage_precisions}, c):
            return t
    pytest.fail("the seeded search no longer draws the trial this test needs")


def _export(run_dir, out, *args):
    return main(["export", "--study", "tfl", "--run-dir", str(run_dir), *args, "--out", str(out)])


@pytest.mark.slow
def test_fp32_trial_ships_onnx_and_a_tflite_that_agrees_with_it(tflite_study, tmp_path,
                                                                 digits16, capsys):
    study, run_dir = tflite_study
    trial = _trial(study, lambda p, c: p == {"fp32"})
    out = tmp_path / "fp32"
    assert _export(run_dir, out, "--trial", str(trial.number), "--format", "onnx,tflite") == 0
    assert te.FP32_FILE in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "config.yaml", "metrics.json", "model.onnx", "weights.pt", te.FP32_FILE])
    x, y = digits16.val.x.numpy(), digits16.val.y.numpy()
    ours = litert.TfliteRunner(out / te.FP32_FILE).predict(x)
    theirs = onnx_predict(out / "model.onnx", x)  # an fp32 trial's artifact is fp32
    agreement = float((ours == theirs).mean())
    assert agreement >= 0.995
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["tflite"]["files"][0]
    assert metrics["formats"] == ["onnx", "tflite"] and len(metrics["tflite"]["files"]) == 1
    assert record["validation_accuracy"] == float((ours == y).mean())
    assert record["size_bytes"] == (out / te.FP32_FILE).stat().st_size
    assert f"{agreement:.2%}" in record["check"] and "not int8" in metrics["tflite"]["no_int8"]
    card = (out / "README.md").read_text()
    assert f"`{te.FP32_FILE}` | fp32 | {record['size_bytes']:,} bytes" in card
    assert "No int8 `.tflite`" in card and "onnxruntime" in card


@pytest.mark.slow
def test_int8_trial_ships_full_integer_tflite_or_refuses_in_one_line(tflite_study, tmp_path,
                                                                     digits16, capsys,
                                                                     monkeypatch):
    study, run_dir = tflite_study
    trial = _trial(study, lambda p, c: p == {"int8"})
    out = tmp_path / "int8"
    real = litert.convert_int8

    def badly_calibrated(model, calibration, example, **kw):
        return real(model, torch.zeros_like(calibration[:4]), example, **kw)

    monkeypatch.setattr(litert, "convert_int8", badly_calibrated)
    assert _export(run_dir, out, "--trial", str(trial.number), "--format", "tflite") == 2
    line = _one_line(capsys.readouterr().err)
    assert f"no .tflite for trial {trial.number}: the int8 .tflite scores validation " \
           "accuracy" in line
    assert f"more than 1 point below the ONNX int8's {trial.values[0]:.4f}" in line
    assert not out.exists() and list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    assert _export(run_dir, out, "--trial", str(trial.number), "--format", "tflite") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "config.yaml", "metrics.json", "weights.pt", te.FP32_FILE, te.INT8_FILE])
    runner = litert.TfliteRunner(out / te.INT8_FILE)
    assert runner.integer_io  # full integer: int8 in, int8 out
    x, y = digits16.val.x.numpy(), digits16.val.y.numpy()
    accuracy = float((runner.predict(x) == y).mean())
    assert accuracy >= trial.values[0] - 0.01
    metrics = json.loads((out / "metrics.json").read_text())
    by_name = {f["file"]: f for f in metrics["tflite"]["files"]}
    assert by_name[te.INT8_FILE]["validation_accuracy"] == accuracy
    assert metrics["validation_accuracy"] == trial.values[0] and metrics["formats"] == ["tflite"]
    card = (out / "README.md").read_text()
    assert "not shipped" in card and "## Run it with onnxruntime" not in card
    for f in by_name.values():
        assert f"`{f['file']}` | {f['precision']} | {f['size_bytes']:,} bytes | " \
               f"{f['validation_accuracy']:.4f}" in card


@pytest.mark.slow
def test_a_rejected_graph_keeps_the_onnx_export_and_says_why(tflite_study, tmp_path, capsys,
                                                             monkeypatch):
    study, run_dir = tflite_study
    trial = _trial(study, lambda p, c: p == {"fp32"})
    why = "the LiteRT converter rejected operator aten.foo.default: Lowering not found"

    def rejects(*args, **kwargs):
        raise litert.ConversionRefused(why)

    monkeypatch.setattr(litert, "convert_float", rejects)
    out = tmp_path / "both"
    assert _export(run_dir, out, "--trial", str(trial.number), "--format", "onnx,tflite") == 2
    line = _one_line(capsys.readouterr().err)
    assert "operator aten.foo.default" in line and "the ONNX export" in line
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.yaml", "metrics.json", "model.onnx", "weights.pt"]
    assert json.loads((out / "metrics.json").read_text())["tflite"] == {"refused": why}
    assert f"no `.tflite` was written: {why}" in (out / "README.md").read_text()

    alone = tmp_path / "alone"
    assert _export(run_dir, alone, "--trial", str(trial.number), "--format", "tflite") == 2
    assert "aten.foo.default" in _one_line(capsys.readouterr().err)
    assert not alone.exists()

    shown = export_message(StudySource("tfl", run_dir, None), trial.number, tmp_path / "dash",
                           formats=["onnx", "tflite"])
    assert shown.id == "export-done" and "aten.foo.default" in _text(shown)
    assert (tmp_path / "dash" / f"trial_{trial.number}" / "model.onnx").is_file()


@pytest.mark.slow
def test_tflite_ladder_names_its_files_and_the_selector_returns_one(tflite_study, tmp_path):
    study, run_dir = tflite_study
    out = tmp_path / "ladder"
    results = ex.export_ladder(study, 2, out, run_dir=run_dir, formats=("tflite",))
    ladder = json.loads((out / "ladder.json").read_text())
    for rung, result in zip(ladder["rungs"], results, strict=True):
        assert set(rung["tflite"]) == ({"fp32", "int8"} if te.INT8_FILE in result.files
                                       else {"fp32"})
        assert rung["model"] == rung["tflite"].get("int8", rung["tflite"]["fp32"])
        assert all((out / path).is_file() for path in rung["tflite"].values())
        assert not (out / rung["model"]).with_name("model.onnx").exists()
    chosen = select(max(r["latency_ms"] for r in ladder["rungs"]), out)
    assert chosen.endswith(".tflite")
    assert litert.TfliteRunner(chosen).logits(np.zeros((1, 1, 16, 16), np.float32)).shape \
        == (1, 10)


@pytest.mark.slow
def test_qat_trial_converts_the_weights_its_onnx_was_quantized_from(tflite_study, digits16):
    study, run_dir = tflite_study
    trial = _trial(study, lambda p, c: "int8" in p and c.qat)
    source = run_dir / "trials" / f"{trial.number:05d}"
    candidate = candidate_from_dict(trial.user_attrs["candidate"])
    rebuilt = te.trial_float_model(source, candidate, digits16)
    model = rebuilt.model
    assert rebuilt.measured == source / te.MEASURED_FP32
    assert "after any quantization-aware" in rebuilt.weights
    # Exactly the float file the search quantized, not weights.pt (saved before the QAT).
    x = digits16.val.x
    with torch.no_grad():
        ours = model(x).argmax(1).numpy()
    assert (ours == onnx_predict(source / te.MEASURED_FP32, x.numpy())).mean() >= 0.995
    before = build_student(candidate, 1, 10)
    load_pruned_state_dict(before, torch.load(source / "weights.pt", weights_only=True))
    before = fold_batchnorm(before.eval()).state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_a_grey_image_expanded_to_rgb_converts_to_a_runnable_int8_file():
    """A base model on grey data is wrapped in GreyToRGB; LiteRT's int8 BROADCAST_TO of its
    ``expand`` fails to prepare, so the converted model concatenates instead (same values)."""
    pytest.importorskip("litert_torch")
    from torch import nn

    from edgeshrink.spaces.base_model.load import GreyToRGB

    torch.manual_seed(0)
    model = GreyToRGB(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                    nn.Flatten(), nn.Linear(8, 10))).eval()
    x = torch.randn(32, 1, 16, 16)
    ready = te.convertible(model)
    with torch.no_grad():
        assert torch.equal(ready(x), model(x))
    runner = litert.TfliteRunner(litert.convert_int8(ready, x, x[:1]))
    assert runner.logits(x[:2].numpy()).shape == (2, 10)
