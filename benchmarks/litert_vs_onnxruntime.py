"""LiteRT against onnxruntime on this machine: do the two runtimes rank the same candidates alike,
and does int8 pay off under each?

N random candidates of the default search space are built and compressed as a trial is (random
weights: latency does not depend on them; channel pruning rounded to `host`'s channel block),
BatchNorm folded, and each is made at two precisions, fp32 and int8 everywhere. Every network
is timed as:

- onnxruntime: the exported ONNX file (fp32, or int8 QDQ from the search's own quantizer), as the
  `host` profile measures a trial;
- LiteRT: the .tflite LiteRT's converter makes from the same torch model (fp32, or full-integer
  int8), XNNPACK delegate, one thread, as `host-litert` measures a trial;

all against one drift gauge, round-robin over every file --repeats times, median kept. Prints
the Spearman rank correlation between the runtimes (per precision and over all files), and per
runtime the share of candidates whose int8 file is faster than their fp32 one and the median
int8 / fp32 ratio, also split by whether a stage uses hard-swish or 7x7 depthwise kernels.
Results go to --out (JSON); --reuse prints them again without timing.

    python benchmarks/litert_vs_onnxruntime.py [--models 50] [--seed 0] [--repeats 3] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import torch
from scipy.stats import spearmanr

from edgeshrink.evaluators.artifact import channel_round_to, quantize_artifact
from edgeshrink.evaluators.data.splits import load_digits_splits
from edgeshrink.evaluators.litert import require_litert
from edgeshrink.evaluators.onnx_export import export_onnx
from edgeshrink.evaluators.timed_file import TorchSource, tflite_bytes
from edgeshrink.evaluators.training import TrainSettings
from edgeshrink.hardware_profiles.cpu import host_cpu
from edgeshrink.hardware_profiles.int8_arithmetic import int8_arithmetic
from edgeshrink.hardware_profiles.measure import measure_latency, prepare_gauge
from edgeshrink.hardware_profiles.registry import load_profile
from edgeshrink.search.suggest import suggest_candidate
from edgeshrink.spaces.blocks import build_student
from edgeshrink.spaces.bn_folding import fold_batchnorm
from edgeshrink.spaces.pruning.methods import PruneContext, prune_model
from edgeshrink.spaces.quantization.plan import QuantPlan
from edgeshrink.spaces.space import load_space

RUNTIMES = ("onnxruntime", "litert")
PRECISIONS = ("fp32", "int8")


def _build(args, data, host, work: Path) -> tuple[list[dict], dict[tuple[str, str], list[Path]]]:
    """Every candidate's four files: (runtime, precision) -> one path per candidate."""
    space = load_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    x, y = data.train.x[:128], data.train.y[:128]
    reduce_range = int8_arithmetic(host).reduce_range
    settings = TrainSettings()
    calib = data.train.x[: settings.calibration_samples]
    rows, files = [], {(r, p): [] for r in RUNTIMES for p in PRECISIONS}
    for i in range(args.models):
        cand = suggest_candidate(study.ask(), space)
        model = build_student(cand, data.in_channels, data.num_classes).eval()
        prune_model(model, cand.pruning, cand.sparsity, cand.importance,
                    PruneContext(example_input=x[:1], steps=1,
                                 loss_fn=lambda m: torch.nn.functional.cross_entropy(m(x), y),
                                 round_to=channel_round_to(cand, host)))
        model = fold_batchnorm(model)
        fp32 = work / f"m{i}_fp32.onnx"
        export_onnx(model, fp32, data.in_channels, data.resolution)
        for precision in PRECISIONS:
            plan = QuantPlan(precision, act_symmetric=cand.act_symmetric,
                             reduce_range=reduce_range)
            onnx_path = fp32
            if precision == "int8":
                onnx_path = work / f"m{i}_int8.onnx"
                quantize_artifact(fp32, onnx_path, data, settings, plan)
            tflite = work / f"m{i}_{precision}.tflite"
            tflite.write_bytes(tflite_bytes(TorchSource(model, plan, calib, data.val.x[:1])))
            files[("onnxruntime", precision)].append(onnx_path)
            files[("litert", precision)].append(tflite)
        rows.append({"arch": cand.arch, "pruning": cand.pruning, "sparsity": cand.sparsity})
        print(f"built {i + 1}/{args.models}: {cand.arch}", flush=True)
    return rows, files


def _has(rows: list[dict], token: str) -> np.ndarray:
    """Candidates with a stage whose arch token has ``token`` (``_hs``: hard-swish, ``_k7``)."""
    return np.array([any(token + "_" in f"{stage}_" for stage in r["arch"].split(","))
                     for r in rows])


def _stats(ms: dict[tuple[str, str], np.ndarray], rows: list[dict]) -> list[str]:
    hs, k7 = _has(rows, "_hs"), _has(rows, "_k7")
    lines = ["| | onnxruntime | LiteRT (XNNPACK) |", "|---|---|---|"]
    for p in PRECISIONS:
        lines.append(f"| median {p} latency (ms) | "
                     + " | ".join(f"{np.median(ms[(r, p)]):.4f}" for r in RUNTIMES) + " |")
    for label, sel in (("all", np.ones_like(hs)), ("with hard-swish", hs),
                       ("without hard-swish", ~hs), ("with 7x7 depthwise", k7),
                       ("without 7x7 depthwise", ~k7)):
        if not sel.any():
            continue
        cells = []
        for r in RUNTIMES:
            ratio = ms[(r, "int8")][sel] / ms[(r, "fp32")][sel]
            cells.append(f"int8 faster in {int((ratio < 1).sum())}/{int(sel.sum())}, "
                         f"median int8/fp32 {np.median(ratio):.2f}")
        lines.append(f"| {label} ({int(sel.sum())}) | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3,
                    help="timings per file (round-robin over all files), median kept")
    ap.add_argument("--out", type=Path, default=Path("runs/litert_vs_onnxruntime.json"))
    ap.add_argument("--reuse", action="store_true", help="print --out again, timing nothing")
    args = ap.parse_args()
    if args.reuse:
        _report(json.loads(args.out.read_text()))
        return
    require_litert("benchmarks/litert_vs_onnxruntime.py")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(args.seed)
    data = load_digits_splits(16)
    sample = data.val.x[:1].numpy()
    host, litert = load_profile("host"), load_profile("host-litert")
    settings = {"onnxruntime": host.measurement, "litert": litert.measurement}
    assert settings["litert"] == replace(host.measurement, runtime="litert")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows, files = _build(args, data, host, work)
        built_s = time.perf_counter() - start
        gauge = prepare_gauge(host, work, sample)
        keys = list(files)
        times = {k: np.zeros((args.repeats, args.models)) for k in keys}
        for rep in range(args.repeats):  # a slow spell hits one timing of many files
            for i in range(args.models):
                for k in keys:
                    times[k][rep, i] = measure_latency(files[k][i], sample, settings[k[0]],
                                                       gauge).median_ms
            print(f"timed repeat {rep + 1}/{args.repeats}", flush=True)
    ms = {k: np.median(v, axis=0) for k, v in times.items()}
    spread = np.concatenate([(v.max(0) - v.min(0)) / np.median(v, 0) for v in times.values()])
    result = {
        "cpu": host_cpu().describe(), "gauge_ms": gauge.ms, "seed": args.seed,
        "repeats": args.repeats, "built_s": built_s, "total_s": time.perf_counter() - start,
        "spread": float(np.median(spread)),
        "candidates": [{**row, **{f"{r}_{p}_ms": float(ms[(r, p)][i]) for r, p in keys}}
                       for i, row in enumerate(rows)]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    _report(result)
    print(f"\nper-candidate latencies: {args.out}")


def _report(result: dict) -> None:
    rows = result["candidates"]
    ms = {(r, p): np.array([c[f"{r}_{p}_ms"] for c in rows]) for r in RUNTIMES
          for p in PRECISIONS}
    print(f"\nCPU: {result['cpu']}; gauge {result['gauge_ms']:.4f} ms; {len(rows)} candidates "
          f"(seed {result['seed']}), {result['repeats']} timings each; built in "
          f"{result['built_s']:.0f} s, total {result['total_s']:.0f} s; repeat spread "
          f"(max-min)/median {result['spread']:.1%} median")
    rho = {p: spearmanr(ms[("onnxruntime", p)], ms[("litert", p)]).statistic for p in PRECISIONS}
    pooled = spearmanr(np.concatenate([ms[("onnxruntime", p)] for p in PRECISIONS]),
                       np.concatenate([ms[("litert", p)] for p in PRECISIONS])).statistic
    print(f"Spearman onnxruntime vs LiteRT: fp32 {rho['fp32']:.3f}, int8 {rho['int8']:.3f}, "
          f"all {2 * len(rows)} files {pooled:.3f}")
    plain = ~_has(rows, "_k7")
    print("  without 7x7 depthwise (" + str(int(plain.sum())) + "): " + ", ".join(
        f"{p} {spearmanr(ms[('onnxruntime', p)][plain], ms[('litert', p)][plain]).statistic:.3f}"
        for p in PRECISIONS) + "\n")
    print("\n".join(_stats(ms, rows)))

if __name__ == "__main__":
    main()
