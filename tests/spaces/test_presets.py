"""The shipped space presets: each builds, exports and is priced on every built-in profile, so a
preset cannot drift from the block code; ``--space`` takes a preset name as well as a file."""

import math
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.artifact import quant_plan
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.hardware_profiles.latency_model import Prediction, predict_latency
from edgeshrink.hardware_profiles.registry import list_profiles, load_profile
from edgeshrink.search.options import SearchOptions, check_worker, validate
from edgeshrink.search.workers import shared_options
from edgeshrink.spaces.blocks import arch_of, build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.candidate import Candidate
from edgeshrink.spaces.enumerate import sample_subnet, stage_options
from edgeshrink.spaces.presets import PRESETS, resolve_space
from edgeshrink.spaces.quantization.onnx_qdq import quantize_with_plan
from edgeshrink.spaces.space import SearchSpace, load_space

FOLDER = Path(__file__).resolve().parents[2] / "spaces" / "presets"
RESOLUTIONS = {"mobilenetv2-32": 32, "mobilenetv3-224": 224, "mcu-96": 96}


def _price(candidate: Candidate, profile_name: str, tmp_path: Path) -> Prediction:
    """Build, fold, export and quantize ``candidate`` as a trial would (untrained, unpruned;
    calibrated on noise), then predict its latency on the profile."""
    torch.manual_seed(0)
    model = build_student(candidate, 3, 10).eval()
    assert arch_of(model) == candidate.arch
    res = candidate.input_resolution
    fp32, artifact = tmp_path / "fp32.onnx", tmp_path / "model.onnx"
    export_onnx(fold_batchnorm(model), fp32, 3, res)
    calibration = np.random.default_rng(0).random((2, 3, res, res), dtype=np.float32)
    quantize_with_plan(fp32, artifact, calibration, quant_plan(candidate, model))
    return predict_latency(artifact, load_profile(profile_name))


def _sample(space: SearchSpace, seed: str, modes: tuple[str, ...]) -> list[Candidate]:
    rng, options = random.Random(seed), stage_options(space)
    return [sample_subnet(space, options, rng, mode) for mode in modes]


def test_the_registry_is_the_folder():
    assert sorted(PRESETS) == sorted(p.stem for p in FOLDER.glob("*.yaml"))
    assert set(PRESETS) == set(RESOLUTIONS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_loads_by_name_as_by_path(name):
    by_name = load_space(name)
    assert by_name.input_resolution == RESOLUTIONS[name]
    # What a study stores and compares on resume: the same for the name and the file.
    assert asdict(by_name) == asdict(load_space(FOLDER / f"{name}.yaml"))


@pytest.mark.parametrize("profile", list_profiles())
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_builds_exports_and_is_priced_on_every_profile(name, profile, tmp_path):
    space = load_space(name).with_precisions(load_profile(profile).precisions)
    for i, cand in enumerate(_sample(space, f"{name}/{profile}", ("smallest", "random"))):
        (tmp_path / str(i)).mkdir()
        prediction = _price(cand, profile, tmp_path / str(i))
        assert math.isfinite(prediction.total_ms) and prediction.total_ms > 0, cand.arch
        assert prediction.layers and prediction.weight_bytes > 0, cand.arch


def test_mcu_96_candidates_fit_the_stm32h7(tmp_path):
    """The preset is sized for the MCU's SRAM and flash: most of it fits, not just a corner."""
    space = load_space("mcu-96").with_precisions(load_profile("stm32h7").precisions)
    fits = []
    for i, cand in enumerate(_sample(space, "mcu-96/fit", ("largest",) + ("random",) * 5)):
        (tmp_path / str(i)).mkdir()
        fits.append(_price(cand, "stm32h7", tmp_path / str(i)).fits_memory)
    assert sum(fits) >= len(fits) // 2 and any(fits), fits


def test_space_option_takes_a_name_or_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mcu-96").write_text("a file named like a preset")
    assert resolve_space("mcu-96") is PRESETS["mcu-96"]  # the name wins ...
    assert resolve_space("./mcu-96") == Path("mcu-96")  # ... a path says it is a file
    validate(SearchOptions(space="mobilenetv3-224"))
    check_worker("s", None, 1, space="mcu-96", profile=None)
    # A worker joining rebuilds the options from the study's JSON copy, which keeps the name.
    assert shared_options(SearchOptions(space="mcu-96"))["space"] == "mcu-96"
    with pytest.raises(EdgeshrinkError, match=r"unknown space 'nosuch': neither a preset "
                                              r"\(mcu-96, mobilenetv2-32, mobilenetv3-224\)"):
        load_space("nosuch")
    with pytest.raises(EdgeshrinkError, match="space file 'nosuch.yaml' does not exist"):
        load_space("nosuch.yaml")


def test_search_help_lists_the_presets(capsys):
    from edgeshrink.search.cli import main

    assert main(["search", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in PRESETS)
