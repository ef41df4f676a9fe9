"""Does reference int8 arithmetic predict what a CPU's int8 kernels compute? Run it on both kinds.

edgeshrink scores int8 files for predicted profiles in reference arithmetic (onnxruntime with
graph optimizations off: QDQ as dequantize -> float op -> quantize). On a CPU whose kernels
accumulate in int32 (VNNI, ARM dotprod) the fused kernels should agree with it; on x86 AVX2
without VNNI full-range weights saturate and 7-bit ones should not. Two steps, so the scoring
runs on a machine with only numpy and onnxruntime (another CPU, a board):

    python benchmarks/int8_kernels_vs_reference.py pack --out DIR \\
        [--study NAME --run-dir runs/NAME ...]     # trials' int8 files + validation images
    python benchmarks/int8_kernels_vs_reference.py score DIR   # here, or on the other machine

``pack`` writes each int8 trial twice, the same trained network quantized with 8-bit and with
7-bit weights (the stored artifact, and its ``model_fp32.onnx`` re-quantized with the other
range, calibrated on the same training images), so the two ranges compare on equal networks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def _cpu() -> str:
    """This CPU, read by hardware_profiles/cpu.py, loaded by path: the machine that scores may
    have only numpy and onnxruntime, not edgeshrink."""
    path = Path(__file__).resolve().parents[1] / "hardware_profiles" / "cpu.py"
    spec = importlib.util.spec_from_file_location("edgeshrink_cpu", path)
    cpu = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cpu  # dataclasses look their module up while building the class
    spec.loader.exec_module(cpu)
    return cpu.host_cpu().describe()


def _logits(path: Path, x: np.ndarray, level: ort.GraphOptimizationLevel) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = level
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 256]})[0]
                           for i in range(0, len(x), 256)])


def score(folder: Path) -> None:
    index = json.loads((folder / "index.json").read_text())
    print(f"CPU: {_cpu()}; onnxruntime {ort.__version__}")
    print(f"{'file':<28} {'weights':>7} {'reference':>9} {'kernels':>8} {'gap':>6} "
          f"{'argmax differ':>13}")
    gaps, by_trial = {}, {}
    for entry in index:
        data = np.load(folder / entry["data"])
        x, y = data["x"].astype(np.float32), data["y"]
        ref = _logits(folder / entry["file"], x, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        fused = _logits(folder / entry["file"], x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        acc_ref, acc_fused = (float((v.argmax(1) == y).mean()) for v in (ref, fused))
        differ = int((ref.argmax(1) != fused.argmax(1)).sum())
        gap = 100 * (acc_ref - acc_fused)
        gaps.setdefault(entry["weights"], []).append((gap, differ, len(y)))
        by_trial.setdefault(entry.get("trial"), {})[entry["weights"]] = (acc_ref, acc_fused)
        print(f"{entry['file']:<28} {entry['weights']:>7} {acc_ref:9.4f} {acc_fused:8.4f} "
              f"{gap:+6.2f} {differ:6d} of {len(y)}")
    for weights, rows in gaps.items():
        g = np.array([r[0] for r in rows])
        d = np.array([r[1] / r[2] for r in rows])
        print(f"{weights} weights, {len(rows)} files: reference minus kernels median "
              f"{np.median(g):+.2f}, worst {g.max():+.2f} points; argmax differs on "
              f"{100 * d.mean():.2f}% of images (worst file {100 * d.max():.2f}%)")
    pairs = [v for v in by_trial.values() if {"8-bit", "7-bit"} <= set(v)]
    if pairs:
        cost = np.array([100 * (v["8-bit"][0] - v["7-bit"][0]) for v in pairs])
        here = np.array([100 * (v["8-bit"][1] - v["7-bit"][1]) for v in pairs])
        print(f"same networks, {len(pairs)} pairs: 8-bit minus 7-bit accuracy in reference "
              f"arithmetic median {np.median(cost):+.2f}, range {cost.min():+.2f} .. "
              f"{cost.max():+.2f} points; with this CPU's kernels median {np.median(here):+.2f}, "
              f"range {here.min():+.2f} .. {here.max():+.2f}")


def pack(out: Path, studies: list[tuple[str, Path]]) -> None:
    from dataclasses import replace

    from optuna.trial import TrialState

    from edgeshrink.evaluators.artifact import quant_plan, quantize_artifact
    from edgeshrink.evaluators.data.sources import load_data, spec_from_setup
    from edgeshrink.evaluators.rescore import MODEL_FILE, artifact_dir
    from edgeshrink.evaluators.training import TrainSettings
    from edgeshrink.search.study import load_existing_study
    from edgeshrink.spaces.blocks import build_student
    from edgeshrink.spaces.candidate import Candidate

    out.mkdir(parents=True, exist_ok=True)
    index = []
    for name, run_dir in studies:
        study = load_existing_study(name, run_dir, None)
        setup = study.user_attrs["setup"]
        for t in study.trials:
            realised = t.user_attrs.get("quantization", {}).get("realised", {})
            if t.state != TrialState.COMPLETE or "int8" not in realised:
                continue
            cand = Candidate.from_dict(t.user_attrs["candidate"])
            data_file = f"{name}_val_{cand.input_resolution}.npz"
            data = load_data(spec_from_setup(setup), cand.input_resolution, run_dir / "data")
            if not (out / data_file).is_file():
                np.savez_compressed(out / data_file, x=data.val.x.numpy(), y=data.val.y.numpy())
            artifact = artifact_dir(t.number, t.user_attrs.get("artifact"), run_dir) / MODEL_FILE
            stored = "7-bit" if cand.reduce_range else "8-bit"
            other = "8-bit" if cand.reduce_range else "7-bit"
            file = f"{name}_{t.number:05d}_{stored}.onnx"
            shutil.copyfile(artifact, out / file)
            flipped = replace(cand, reduce_range=not cand.reduce_range)
            plan = quant_plan(flipped, build_student(flipped, data.in_channels,
                                                     data.num_classes))
            twin = f"{name}_{t.number:05d}_{other}.onnx"
            quantize_artifact(artifact.with_name("model_fp32.onnx"), out / twin, data,
                              TrainSettings(**setup["settings"]), plan)
            index += [{"file": file, "data": data_file, "weights": stored, "trial": t.number},
                      {"file": twin, "data": data_file, "weights": other, "trial": t.number}]
    (out / "index.json").write_text(json.dumps(index, indent=1))
    print(f"packed {len(index)} int8 files into {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--study", action="append", required=True)
    p.add_argument("--run-dir", action="append", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("folder", type=Path)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.out, list(zip(args.study, args.run_dir, strict=True)))
    else:
        score(args.folder)


if __name__ == "__main__":
    main()
