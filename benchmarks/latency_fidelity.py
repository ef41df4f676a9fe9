"""Does the latency model predict this host? Calibrate, then predict unseen candidates.

1. `edgeshrink profile calibrate`'s micro-benchmarks (operators, blocks, small networks and 100
   networks sampled from the space by their own seeds) are timed here and fitted: the per-kernel
   cost table and the roofline (the profile is written to --profile-out).
2. N random candidates of the default search space (never used in calibration) are built,
   pruned and quantized as a trial would (random weights: latency does not depend on them),
   exported, timed with onnxruntime and predicted from their ONNX graph.
3. Prints Spearman rank correlation, the share within +-10 % and the mean absolute percentage
   error. Targets (issue): Spearman >= 0.95, >= 90 % within +-10 %, MAPE <= 10 %.

Measurement and calibration use the same drift-correcting gauge, so both are on one scale, and
both time every model --repeats times round-robin and keep the median. The timings and graphs are
kept in --cache; --reuse refits and re-predicts from them in seconds (the fit is deterministic).

    python benchmarks/latency_fidelity.py [--models 50] [--seed 0] [--repeats 3]
                                          [--profile-out FILE]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import torch
from scipy.stats import spearmanr

from edgeshrink.evaluators.artifact import channel_round_to, quant_plan, quantize_artifact
from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.calibrate import (
    FUSION,
    fit_kernels,
    fit_roofline,
    profile_toml,
    run_micro_benchmarks,
)
from edgeshrink.hardware_profiles.graph_layers import analyse_graph
from edgeshrink.hardware_profiles.latency_model import predict_layers
from edgeshrink.hardware_profiles.measure import measure_latency, prepare_gauge
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.suggest import suggest_candidate
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.pruning.methods import PruneContext, prune_model
from edgeshrink.spaces.space import load_space


def _loss(data):
    """Cross-entropy on a few training images: the gradients Taylor importance ranks by."""
    x, y = data.train.x[:128], data.train.y[:128]
    return lambda model: torch.nn.functional.cross_entropy(model(x), y)


def _measure(args: argparse.Namespace, data, sample: np.ndarray, host) -> tuple:
    """Time the micro-benchmarks and the test candidates, round-robin, on one gauge."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gauge = prepare_gauge(host, work, sample)
        samples = run_micro_benchmarks(work, gauge, host.measurement, ("fp32", "int8"),
                                       repeats=args.repeats)
        space = load_space()
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
        paths, labels = [], []
        for i in range(args.models):
            cand = suggest_candidate(study.ask(), space)
            model = build_student(cand, data.in_channels, data.num_classes).eval()
            # Compressed as a trial is (no training: latency does not depend on the values).
            prune_model(model, cand.pruning, cand.sparsity, cand.importance,
                        PruneContext(example_input=data.train.x[:1], loss_fn=_loss(data),
                                     steps=1, round_to=channel_round_to(cand, host)))
            plan = quant_plan(cand, model)
            fp32, final = work / f"m{i}_fp32.onnx", work / f"m{i}.onnx"
            export_onnx(fold_batchnorm(model), fp32, data.in_channels, data.resolution)
            quantize_artifact(fp32, final, data, TrainSettings(), plan)
            kinds = set(plan.precisions)
            kind = kinds.pop() if len(kinds) == 1 else "mixed"
            labels.append(f"{kind} {cand.pruning} {cand.arch}")
            paths.append(final)
        # Round-robin, as in calibration: a slow spell hits one timing of many models.
        times = np.array([[measure_latency(path, sample, host.measurement, gauge).median_ms
                           for path in paths] for _ in range(args.repeats)])
        test_layers = [analyse_graph(path, FUSION) for path in paths]
    return samples, test_layers, times, labels, gauge.ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3,
                    help="timings per model (round-robin over all models), median kept")
    ap.add_argument("--profile-out", type=Path, default=Path("runs/host-calibrated.toml"))
    ap.add_argument("--cache", type=Path, default=Path("runs/latency_fidelity.pkl"),
                    help="where the timings are kept for --reuse")
    ap.add_argument("--reuse", action="store_true",
                    help="refit from the timings in --cache instead of timing again")
    ap.add_argument("--compare", type=Path, action="append", default=[],
                    help="also predict the candidates with this existing profile file, e.g. "
                         "one calibrated on another CPU")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(args.seed)
    data = load_digits_splits(16)
    sample = data.val.x[:1].numpy()
    host = load_profile("host")
    if args.reuse and args.cache.is_file():
        # Refit and re-predict from stored timings and graphs: seconds instead of minutes.
        with open(args.cache, "rb") as fh:
            samples, test_layers, times, labels, gauge_ms = pickle.load(fh)
    else:
        samples, test_layers, times, labels, gauge_ms = _measure(args, data, sample, host)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        with open(args.cache, "wb") as fh:
            pickle.dump((samples, test_layers, times, labels, gauge_ms), fh)
    fit, kernels = fit_roofline(samples), fit_kernels(samples)
    args.profile_out.parent.mkdir(parents=True, exist_ok=True)
    args.profile_out.write_text(profile_toml(fit, "host-calibrated", "this host, calibrated",
                                             "cpu", len(samples), gauge_ms, kernels),
                                encoding="utf-8")
    profile = load_profile(str(args.profile_out))
    print(f"calibrated {args.profile_out} from {len(samples)} timed models: kernel-table MAPE "
          f"{kernels.mape:.1%} on them ({len(kernels.kernels)} kernels), roofline MAPE "
          f"{fit.mape:.1%} (channel blocks {fit.channel_block}), gauge {gauge_ms:.4f} ms")
    measured = np.median(times, axis=0)
    predicted = [predict_layers(layers, profile).total_ms for layers in test_layers]
    # The same profile without its kernel table: what the roofline alone predicts.
    roofline = replace(profile, kernels={})
    roof = np.array([predict_layers(layers, roofline).total_ms for layers in test_layers])
    roof_err = np.abs(roof - measured) / measured
    print(f"roofline alone: Spearman {spearmanr(measured, roof).statistic:.3f}, within +-10% "
          f"{np.mean(roof_err <= 0.10):.0%}, MAPE {roof_err.mean():.1%}")
    for i, (ms, pred) in enumerate(zip(measured, predicted, strict=True)):
        print(f"{i:3d} measured {ms:.4f} predicted {pred:.4f} ({pred / ms - 1:+.1%}) "
              f"{labels[i]}", flush=True)
    spread = (times.max(axis=0) - times.min(axis=0)) / measured
    print(f"\nmeasurement repeatability ({args.repeats} timings per model): spread "
          f"(max-min)/median {np.median(spread):.1%} median, {np.percentile(spread, 90):.1%} p90")
    m, p = np.array(measured), np.array(predicted)
    err = np.abs(p - m) / m
    rho = spearmanr(m, p).statistic
    print(f"\nmodels: {len(m)}, measured {m.min():.3f} .. {m.max():.3f} ms")
    print(f"Spearman rank correlation: {rho:.3f} (target >= 0.95)")
    print(f"within +-10%: {np.mean(err <= 0.10):.0%} (target >= 90%)")
    print(f"MAPE: {err.mean():.1%} (target <= 10%); median abs error {np.median(err):.1%}")
    for other in args.compare:
        theirs = load_profile(str(other))
        q = np.array([predict_layers(layers, theirs).total_ms for layers in test_layers])
        e = np.abs(q - m) / m
        where = theirs.calibrated_on.describe() if theirs.calibrated_on else "CPU not recorded"
        print(f"{other} ({where}): Spearman {spearmanr(m, q).statistic:.3f}, within +-10% "
              f"{np.mean(e <= 0.10):.0%}, MAPE {e.mean():.1%}, median ratio predicted/measured "
              f"{np.median(q / m):.2f}")
    for prec in ("fp32", "int8", "mixed"):
        sel = np.array([lb.startswith(prec) for lb in labels])
        if sel.any():
            print(f"  {prec}: {sel.sum()} models, MAPE {err[sel].mean():.1%}, "
                  f"within +-10% {np.mean(err[sel] <= 0.10):.0%}")


if __name__ == "__main__":
    main()
