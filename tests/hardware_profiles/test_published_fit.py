"""Fitting a profile to published whole-network latencies, and the leave-one-network-out check."""

from __future__ import annotations

import math

import pytest
from profile_files import GOOD, write_profile

from edgeshrink.hardware_profiles.calibrate.published_fit import (
    Figure,
    Fit,
    apply_fit,
    fit_profile,
    leave_one_out,
    list_published,
    load_published,
    max_scale,
    network_terms,
    parse_published,
    spearman,
)
from edgeshrink.hardware_profiles.commands import show_text
from edgeshrink.hardware_profiles.graph_layers import Layer
from edgeshrink.hardware_profiles.latency_model import predict_layers
from edgeshrink.hardware_profiles.registry import ProfileError, list_profiles, load_profile


def _layer(i: int, op_class: str, macs: int, acts: int, weights: int, precision: str) -> Layer:
    return Layer(f"l{i}", "Conv", op_class, precision, macs, acts, weights, 1.0, False, acts // 2)


def _network(seed: int, precision: str = "fp32") -> list[Layer]:
    """A made-up network: layers of every class, sizes varying with the seed, some of them
    memory-bound on the test profile (1 GMAC/s, 1 GB/s)."""
    classes = ["conv", "depthwise", "pointwise", "matmul", "elementwise", "pooling"]
    return [_layer(i, classes[(i + seed) % 6], 10_000 * (1 + (i * seed) % 7),
                   2_000 * (1 + (i + seed) % 5), 500 * (i % 3), precision)
            for i in range(5 + 3 * seed)]


def _figures(profile, truth: Fit, networks: list[list[Layer]]) -> list[Figure]:
    device = apply_fit(profile, truth)
    return [Figure(f"net{i}", 224, n[0].precision, predict_layers(n, device).total_ms, "made-up")
            for i, n in enumerate(networks)]


def _tops(profile, *precisions: str) -> dict[str, float]:
    return {p: max_scale(profile, p) for p in precisions}


def test_fit_recovers_the_scales_and_overhead_that_made_the_figures(tmp_path):
    profile = write_profile(tmp_path)
    networks = [_network(s) for s in range(1, 6)] + [_network(s, "int8") for s in range(2, 6)]
    truth = Fit(scales={"fp32": 0.37, "int8": 0.8}, overhead_us=5.0, error=0.0)
    figures = _figures(profile, truth, networks)
    terms = [network_terms(n, profile, ["fp32", "int8"]) for n in networks]
    # Terms reproduce the latency model exactly, at any scales and overhead.
    device = apply_fit(profile, truth)
    assert device.layer_overhead_us("int8") == 5.0  # one overhead for every precision
    assert terms[-1].ms(truth.scales, truth.overhead_us) == pytest.approx(
        predict_layers(networks[-1], device).total_ms, rel=1e-12)
    fit = fit_profile(terms, [f.ms for f in figures], _tops(profile, "fp32", "int8"))
    assert fit.scales["fp32"] == pytest.approx(0.37, rel=1e-3)
    assert fit.scales["int8"] == pytest.approx(0.8, rel=1e-3)
    assert fit.overhead_us == pytest.approx(5.0, rel=1e-3) and fit.error < 1e-4
    # No scale lifts a share of peak past 1 (the test profile's largest share is 0.5).
    capped = fit_profile(terms[:5], [f.ms / 100 for f in figures[:5]], _tops(profile, "fp32"))
    assert capped.scales["fp32"] == pytest.approx(2.0, rel=1e-6)
    assert max(apply_fit(profile, capped).efficiency_overrides["fp32"].values()) <= 1.0


def test_leave_one_out_never_sees_the_network_it_predicts(tmp_path):
    profile = write_profile(tmp_path)
    networks = [_network(s) for s in range(1, 7)]
    figures = _figures(profile, Fit({"fp32": 0.6}, 3.0, 0.0), networks)
    terms = [network_terms(n, profile, ["fp32"]) for n in networks]
    tops = _tops(profile, "fp32")
    clean = leave_one_out(terms, figures, tops, profile.per_layer_us)
    assert [h.figure for h in clean] == figures
    assert all(abs(h.error) < 1e-3 for h in clean)  # consistent figures: every one predicted
    wrong = [*figures[:-1], Figure("net5", 224, "fp32", figures[-1].ms * 3, "made-up")]
    held = leave_one_out(terms, wrong, tops, profile.per_layer_us)
    # The tripled figure is predicted from the others alone: its true value, 67% below it...
    assert held[-1].predicted_ms == pytest.approx(clean[-1].predicted_ms, rel=1e-6)
    assert held[-1].error == pytest.approx(1 / 3 - 1, rel=1e-3)
    # ... while every other prediction now includes it in its fit and moves.
    assert all(abs(h.error) > 1e-3 for h in held[:-1])
    # A network published at two precisions leaves with both.
    both = [*figures, Figure("net0", 224, "int8", 1.0, "made-up")]
    pair = leave_one_out([*terms, network_terms(networks[0], profile, ["fp32"])], both, tops,
                         profile.per_layer_us)
    assert pair[0].predicted_ms == pytest.approx(clean[0].predicted_ms, rel=1e-6)


def test_one_other_figure_fits_the_scale_alone(tmp_path):
    profile = write_profile(tmp_path)
    networks = [_network(1), _network(4)]
    figures = _figures(profile, Fit({"fp32": 0.5}, 2.0, 0.0), networks)
    terms = [network_terms(n, profile, ["fp32"]) for n in networks]
    held = leave_one_out(terms, figures, _tops(profile, "fp32"), 2.0)
    assert all(abs(h.error) < 1e-3 for h in held)  # the overhead given is the true one


def test_spearman_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1], [2]))


def test_published_files_name_their_sources_and_profiles_say_what_they_were_fitted_to():
    names = list_published()
    assert {"phone-cortex-a76", "phone-cortex-a75", "raspberry-pi-4", "jetson-nano",
            "coral-edge-tpu"} <= set(names)
    for name in names:
        pub = load_published(name)
        profile = load_profile(name)
        assert pub.profile == name and profile.latency_method == "predicted"
        assert {f.precision for f in pub.figures} <= set(profile.precisions)
        assert profile.published is not None, name
        counts = {p: len(pub.of(p)) for p in profile.precisions if pub.of(p)}
        assert {p: n for p, n in profile.published.figures.items() if n} == counts, name
        assert set(profile.published.holdout_error) <= set(counts), name
    for name in list_profiles():  # every predicted profile says what it was checked on
        profile = load_profile(name)
        assert (profile.published is not None) == (profile.latency_method == "predicted"), name


def test_published_table_is_checked(tmp_path):
    with pytest.raises(ProfileError, match="source named in"):
        parse_published({"profile": "x", "sources": {"a": "cite"}, "figures": [
            {"network": "n", "input": 8, "precision": "fp32", "ms": 1.0, "source": "b"}]}, "x")
    with pytest.raises(ProfileError, match="figures go above it"):
        parse_published({"profile": "x", "sources": {"a": "cite", "figures": []}}, "x")
    with pytest.raises(ProfileError, match=r"published\.figures"):
        write_profile(tmp_path, GOOD + "[published]\nfigures = { fp64 = 3 }\n")
    profile = write_profile(tmp_path, GOOD + "[published]\nfigures = { fp32 = 6, int8 = 2 }\n"
                            "holdout_error = { fp32 = 0.12 }\nnote = \"int8: two figures\"\n")
    assert profile.published.figures == {"fp32": 6, "int8": 2}
    text = show_text(str(tmp_path / "dev.toml"))
    assert ("published device latencies fitted to: fp32 6 (each left out: median error 12%); "
            "int8 2") in text
    assert "fewer than 5 for int8" in text and "int8: two figures" in text
