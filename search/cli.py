"""The ``edgeshrink`` command line: parse, hand over, print one-line errors. Heavy imports wait."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.search.options import (
    DASHBOARD_HOST,
    DASHBOARD_PORT,
    DASHBOARD_REFRESH_S,
    DEFAULTS,
    SearchOptions,
    check_build,
    check_dashboard,
    check_export,
    check_study,
    check_worker,
    validate,
)
from edgeshrink.spaces.presets import PRESETS


class _Parser(argparse.ArgumentParser):
    """Bad arguments get one line and a pointer to --help, like every other error, not the
    usage wall; every subparser is of this class too (``add_subparsers`` copies it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A subcommand refuses what it does not know itself, so the line names the subcommand.
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default=DEFAULTS["study"],
                   help=f"study name (default: {DEFAULTS['study']})")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="run directory holding the study journal, teacher and trial artifacts "
                        "(default: runs/<study>)")
    p.add_argument("--storage", default=None,
                   help="any Optuna storage URL instead of the run directory's journal file, "
                        "e.g. sqlite:///study.db or postgresql://user@host/db")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgeshrink",
        description="Find the best compressed model for an edge device.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("search", help="run (or resume) a compression search")
    _study_args(s)
    def opt(flag: str, **kw: Any) -> None:  # the default is SearchOptions' field default
        s.add_argument(flag, default=DEFAULTS[kw.get("dest") or flag[2:].replace("-", "_")], **kw)

    opt("--trials", type=int, help="completed trials to reach (default %(default)s)")
    opt("--timeout", type=float, help="stop after this many seconds")
    opt("--seed", type=int, help="0 .. 2**32-1 (default %(default)s)")
    opt("--sampler", help="gp, tpe, nsga2 or random (default %(default)s)")
    opt("--max-latency", type=float, metavar="MS",
        help="constraint: latency at most MS milliseconds")
    opt("--min-accuracy", type=float, metavar="FRACTION",
        help="constraint: validation accuracy at least FRACTION (e.g. 0.95)")
    opt("--profile", help="hardware profile name or .toml path (default %(default)s)")
    opt("--dataset", help="digits, mnist, fashion-mnist, cifar10 or imagefolder:PATH "
                          "(default %(default)s)")
    opt("--data-dir", type=Path, help="where torchvision data sets are (default: ./data)")
    opt("--download", action="store_true",
        help="download a torchvision data set missing from --data-dir")
    opt("--teacher", metavar="PATH",
        help="your trained model: TorchScript file, ONNX file or ARCH:WEIGHTS (torchvision "
             "architecture and state dict); default: train one")
    opt("--model", metavar="SPEC",
        help="your trained model to compress: ARCH:WEIGHTS (torchvision architecture and "
             "state dict) or module.path:factory[:WEIGHTS] (runs your code); it is also the "
             "teacher unless --teacher is given")
    opt("--families", type=_comma_list, metavar="LIST",
        help="candidate families: base (compressed copies of --model), student (searched "
             "networks); default: base,student with --model, student without")
    opt("--resolution", type=int, metavar="PX",
        help="input size of every candidate, e.g. the size --model was trained at "
             "(default: the space's input_resolution)")
    opt("--space", metavar="NAME|FILE",
        help=f"search space: a preset ({', '.join(PRESETS)}; README lists them) or a YAML "
             "file (default: the built-in default_space.yaml)")
    opt("--epochs", type=int, help="distillation epochs per trial (default %(default)s)")
    opt("--finetune-epochs", type=int, help="fine-tune epochs after pruning (default %(default)s)")
    opt("--device", help="where trials train: auto (CUDA when torch sees it, else CPU), cpu, "
                         "cuda, cuda:N or mps; export and scoring stay on the CPU "
                         "(default %(default)s)")
    opt("--batch-size", type=int, metavar="N",
        help="training batch; the learning rate scales linearly with it (default %(default)s)")
    opt("--augment", help="none or standard (random crop and flip); default: standard except "
                          "on digits")
    opt("--loader-workers", type=int, metavar="N",
        help="processes augmenting training images (default %(default)s: in the trial's own)")
    opt("--no-progress", dest="progress", action="store_false", help="no progress bar")
    opt("--jobs", type=int, metavar="N",
        help="worker processes on this machine, sharing the study (default %(default)s)")
    opt("--no-early-stop", dest="early_stop", action="store_false",
        help="train every trial to the end (default: abort hopeless ones early)")
    opt("--objectives", type=_comma_list, metavar="LIST",
        help="comma list of accuracy, latency (both required), energy (profiles with energy "
             f"figures), size (default: {','.join(DEFAULTS['objectives'])})")
    opt("--weight-sharing", action="store_true",
        help="train one supernet first; each trial inherits its weights instead of training "
             "from scratch (faster, ranks less faithfully: BENCHMARKS.md)")

    w = sub.add_parser("worker", help="join a study started by `search`, from any machine")
    _study_args(w)
    w.add_argument("--worker-index", type=int, default=None, metavar="I",
                   help="this worker's number (>= 1); sets its sampler seed (default: random)")
    w.add_argument("--space", default=None, metavar="NAME|FILE",
                   help="the study's space (preset name or file), where its path differs on "
                        "this machine")
    w.add_argument("--profile", default=None,
                   help="the study's profile .toml, where its path differs on this machine")
    w.add_argument("--device", default=None,
                   help="where this worker trains: auto, cpu, cuda, cuda:N or mps (default auto; "
                        "auto and cuda give worker I the GPU I mod n)")
    w.add_argument("--loader-workers", type=int, default=None, metavar="N",
                   help="processes augmenting this worker's training images (default 0)")

    r = sub.add_parser("report", help="write the Pareto report of a study")
    _study_args(r)

    e = sub.add_parser("export", help="export a chosen point (or a ladder of points) of a study")
    _study_args(e)
    how = e.add_mutually_exclusive_group(required=True)
    how.add_argument("--trial", type=int, help="export this trial number")
    how.add_argument("--max-latency", type=float, metavar="MS",
                     help="export the most accurate trial within MS milliseconds")
    how.add_argument("--knee", action="store_true", help="export the knee of the Pareto front")
    how.add_argument("--ladder", type=int, metavar="K",
                     help="export K front points over the latency range plus a runtime selector")
    e.add_argument("--out", type=Path, required=True, help="directory to write")
    e.add_argument("--force", action="store_true", help="replace --out if it exists")
    e.add_argument("--format", default="onnx", metavar="LIST",
                   help="comma list of model files: onnx (the measured file; default), tflite "
                        "(LiteRT fp32, plus full-integer int8 for int8 trials; needs the "
                        "[tflite] extra)")

    b = sub.add_parser("build", help="retrain and export a model from an exported config.yaml")
    b.add_argument("config", type=Path, help="config.yaml written by edgeshrink export")
    b.add_argument("--out", type=Path, required=True, help="directory to write")
    b.add_argument("--teacher-dir", type=Path, default=None,
                   help="teacher cache to reuse (default: <out>/../.edgeshrink-teacher)")
    b.add_argument("--force", action="store_true", help="replace --out if it exists")
    b.add_argument("--device", default="auto",
                   help="where to train: auto (CUDA if torch sees it, else CPU), cpu, cuda, "
                        "cuda:N or mps; the recipe's numbers do not depend on it beyond "
                        "floating-point order")

    d = sub.add_parser("dashboard", help="serve a live Pareto dashboard of a study")
    _study_args(d)
    d.add_argument("--host", default=DASHBOARD_HOST,
                   help=f"address to listen on (default {DASHBOARD_HOST})")
    d.add_argument("--port", type=int, default=DASHBOARD_PORT,
                   help=f"port (default {DASHBOARD_PORT})")
    d.add_argument("--export-dir", type=Path, default=None,
                   help="where the Export button writes trial_<N>/ (default: <run-dir>/exports)")
    d.add_argument("--refresh", type=float, default=DASHBOARD_REFRESH_S, metavar="S",
                   help=f"seconds between re-reads of the study (default {DASHBOARD_REFRESH_S:g})")

    pr = sub.add_parser("profile",
                        help="hardware profiles: list, show, predict, calibrate, bundle")
    psub = pr.add_subparsers(dest="profile_command", metavar="SUBCOMMAND", required=True)
    psub.add_parser("list", help="built-in profiles")
    ps = psub.add_parser("show", help="a profile's numbers and their sources")
    ps.add_argument("name", help="profile name or .toml path")
    pp = psub.add_parser("predict", help="predicted latency of any ONNX model on a profile")
    pp.add_argument("model", type=Path, help="ONNX file")
    pp.add_argument("--profile", default="raspberry-pi-4", help="profile name or .toml path")
    pp.add_argument("--format", default="table", help="table (default) or json")
    pc = psub.add_parser("calibrate", help="time micro-benchmarks here and write a profile")
    pc.add_argument("--out", type=Path, required=True, help="profile file to write (.toml)")
    pc.add_argument("--name", default=None, help="profile name (default: the file's stem)")
    pc.add_argument("--kind", default="cpu", help="cpu (default), gpu, npu or mcu")
    pc.add_argument("--precisions", default="fp32,int8", help="comma list (default fp32,int8)")
    pc.add_argument("--quick", action="store_true", help="fewer micro-benchmarks, less fidelity")
    pc.add_argument("--runtime", default="onnxruntime",
                    help="onnxruntime (default) or litert: time .tflite files with LiteRT's "
                         "XNNPACK delegate (needs the [tflite] extra)")
    pb = psub.add_parser("bundle", help="calibrate as one file for a device with only numpy and "
                         "onnxruntime: python calibrate.pyz --out my-device.toml")
    pb.add_argument("--out", type=Path, required=True, help="zipapp to write (.pyz)")
    pb.add_argument("--quick", action="store_true",
                    help="only the models --quick times: a smaller file")
    return parser


def _search(args: argparse.Namespace) -> None:
    # Every field of SearchOptions that the parser has, under the same name: no second list.
    opts = SearchOptions(**{k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)})
    validate(opts)  # before the heavy imports below: a bad option costs nothing
    from edgeshrink.reports.writer import search_and_report

    search_and_report(opts)


def _worker(args: argparse.Namespace) -> None:
    import os

    check_worker(args.study, args.run_dir, args.worker_index, args.space, args.profile,
                 args.device)
    from edgeshrink.search.workers import STORAGE_ENV, run_worker

    # The URL may come from the environment, which keeps a password out of the process list.
    run_worker(args.study, args.run_dir, args.storage or os.environ.get(STORAGE_ENV),
               args.worker_index, space=args.space, profile=args.profile, device=args.device,
               loader_workers=args.loader_workers)


def _report(args: argparse.Namespace) -> None:
    from edgeshrink.reports.frame import pareto_frame
    from edgeshrink.reports.writer import write_report
    from edgeshrink.search.study import load_existing_study, resolve_run_dir

    run_dir = resolve_run_dir(args.study, args.run_dir)
    study = load_existing_study(args.study, run_dir, args.storage)
    try:
        paths = write_report(study, run_dir)
    except OSError as exc:
        raise EdgeshrinkError(f"cannot write the report into {run_dir}: {exc.strerror}") from None
    front = pareto_frame(study)
    cols = [c for c in ("trial", "accuracy", "latency_ms", "energy_mj", "size_bytes", "precision",
                        "arch")
            if c in front.columns]
    print(front[cols].to_string(index=False) if len(front) else "no Pareto-optimal trials yet")
    print(f"report: {paths['html']}")


def _export(args: argparse.Namespace) -> None:
    check_export(args.trial, args.max_latency, args.ladder, args.out)
    from edgeshrink.evaluators.tflite_export import parse_formats

    formats = parse_formats(args.format)
    if "tflite" in formats:  # before the study is read: a missing extra costs nothing
        from edgeshrink.evaluators.litert import require_litert

        require_litert()
    from edgeshrink.reports import export as ex
    from edgeshrink.search.study import load_existing_study, resolve_run_dir

    run_dir = resolve_run_dir(args.study, args.run_dir)
    study = load_existing_study(args.study, run_dir, args.storage)
    if args.ladder is not None:
        results = ex.export_ladder(study, args.ladder, args.out, run_dir=run_dir, force=args.force,
                                   formats=formats)
        for r in results:
            print(f"trial {r.trial}: latency {r.metrics['latency_ms']:.4f} ms, validation "
                  f"{r.val_accuracy:.4f}, test {r.test_accuracy:.4f} -> {r.out_dir}")
            _print_tflite(r)
        print(f"ladder of {len(results)} models: {args.out} (runtime selector: "
              f"{args.out / ex.SELECTOR_FILE})")
        _tflite_refused(results, args.out)
        return
    if args.trial is not None:
        pick = ex.pick_by_number(study, args.trial)
    elif args.max_latency is not None:
        pick = ex.pick_under_latency(study, args.max_latency)
    else:
        pick = ex.pick_knee(study)
    r = ex.export_trial(study, pick.trial.number, args.out, run_dir=run_dir, force=args.force,
                        reason=pick.reason, formats=formats)
    print(f"exported trial {r.trial} ({pick.reason}): latency {r.metrics['latency_ms']:.4f} ms, "
          f"validation accuracy {r.val_accuracy:.4f} (reproduced), test accuracy "
          f"{r.test_accuracy:.4f}")
    _print_tflite(r)
    print(f"wrote {', '.join(r.files)} to {r.out_dir}")
    _tflite_refused([r], args.out)


def _print_tflite(r: Any) -> None:
    for f in r.tflite:
        print(f"  {f['file']}: {f['size_bytes']:,} bytes, validation accuracy "
              f"{f['validation_accuracy']:.4f}, test {f['test_accuracy']:.4f} ({f['check']})")
    for note in r.metrics.get("tflite", {}).get("notes", []):
        print(f"  {note}")


def _tflite_refused(results: list[Any], out: Path) -> None:
    """The ONNX export is complete, but a .tflite asked for is missing: fail in one line."""
    refused = [r for r in results if r.tflite_refused]
    if refused:
        raise EdgeshrinkError(
            f"no .tflite for trial {refused[0].trial}: {refused[0].tflite_refused}"
            + (f" (and {len(refused) - 1} more trial(s))" if len(refused) > 1 else "")
            + f"; the ONNX export in {out} is complete, its model card says why")


def _build(args: argparse.Namespace) -> None:
    check_build(args.config, args.out, args.teacher_dir)
    from dataclasses import replace

    from edgeshrink.evaluators.build import build_into, load_build_config
    from edgeshrink.evaluators.device import resolve_device

    device = resolve_device(args.device)  # refused in one line before anything is read
    config = load_build_config(args.config)
    config = replace(config, training=replace(config.training, device=device))
    teacher_dir = args.teacher_dir or args.out.parent / ".edgeshrink-teacher"
    result = build_into(config, args.out, teacher_dir, force=args.force)
    expected = config.expected.get("validation_accuracy")
    note = "" if expected is None else (
        " (matches the exported model)" if result.accuracy == expected
        else f" (the exported model had {expected:.4f})")
    print(f"built {config.candidate.arch} ({config.candidate.precision}): validation accuracy "
          f"{result.accuracy:.4f}{note}, latency {result.latency_ms:.4f} ms, "
          f"{result.size_bytes:,} bytes -> {args.out}")


def _dashboard(args: argparse.Namespace) -> None:
    check_dashboard(args.host, args.port, args.export_dir, args.refresh)
    from edgeshrink.reports.dashboard import serve

    serve(args.study, args.run_dir, args.storage, args.export_dir, host=args.host,
          port=args.port, refresh_s=args.refresh)


def _litert_micro_models(*args: object) -> list:
    # The converter needs torch, which the profile side never imports: handed in from here, and
    # imported only once the runtime check has passed.
    from edgeshrink.evaluators.litert_micro import tflite_micro_models

    return tflite_micro_models(*args)


# `profile calibrate --runtime R`: what makes R's micro-model files (default: the ONNX ones).
MICRO_MODELS = {"litert": _litert_micro_models}


def _profile(args: argparse.Namespace) -> None:
    from edgeshrink.hardware_profiles import commands

    if args.profile_command == "list":
        print(commands.list_text())
    elif args.profile_command == "show":
        print(commands.show_text(args.name))
    elif args.profile_command == "predict":
        print(commands.predict_text(args.model, args.profile, args.format))
    elif args.profile_command == "bundle":
        commands.bundle_command(args.out, args.quick)
    else:
        commands.calibrate_command(args.out, args.name, args.kind, args.precisions, args.quick,
                                   args.runtime, MICRO_MODELS.get(args.runtime))


COMMANDS = {"profile": _profile, "search": _search, "report": _report, "export": _export,
            "build": _build, "dashboard": _dashboard, "worker": _worker}


def main(argv: list[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if hasattr(args, "study"):  # every study command: the name and --run-dir, up front
            check_study(args.study, args.run_dir)
        COMMANDS[args.command](args)
    except EdgeshrinkError as exc:
        if args.debug:
            raise
        print(f"edgeshrink: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeshrink: interrupted; finished trials are saved, run the same command to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
