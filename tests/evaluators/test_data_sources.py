"""Bring your own data and teacher: every data source and every teacher form, end to end.

All data is generated here, on disk, in the formats torchvision reads: an ImageFolder tree of
PNGs, MNIST idx-ubyte files and CIFAR-10 python pickles. Four tiny two-trial searches cover the
four sources and the four teacher forms (trained here, TorchScript, ONNX, torchvision name plus
state dict) between them; the rest checks readers, caches and one-line errors without a search.
"""

import os
import pickle
import struct
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from optuna.trial import TrialState
from PIL import Image
from torch import nn

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.evaluators.build import load_build_config
from edgeshrink.evaluators.data import readers, torchvision_files
from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.onnx_eval import onnx_accuracy
from edgeshrink.evaluators.settings import TrainSettings
from edgeshrink.evaluators.teacher.load import load_teacher, parse_teacher
from edgeshrink.reports import export as ex
from edgeshrink.reports.writer import search_and_report
from edgeshrink.search.cli import main
from edgeshrink.search.runner import SearchOptions

TINY = dict(trials=2, epochs=1, finetune_epochs=0, sampler="random", progress=False)
CLASSES = 3

# ---------------------------------------------------------------- generated data on disk


def _patterns(per_class: int, size: int, channels: int, seed: int):
    """Three learnable classes: bright top half, bright left half, bright centre; noisy."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(CLASSES):
        for _ in range(per_class):
            img = rng.integers(0, 60, (size, size, channels))
            if c == 0:
                img[: size // 2] += 180
            elif c == 1:
                img[:, : size // 2] += 180
            else:
                img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += 180
            xs.append(img.clip(0, 255).astype(np.uint8))
            ys.append(c)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, arr.ndim) + dims + arr.tobytes())


def make_mnist(root: Path, folder: str = "MNIST"):
    raw = root / folder / "raw"
    (x, y), (xt, yt) = _patterns(24, 28, 1, 1), _patterns(8, 28, 1, 2)
    _write_idx(raw / "train-images-idx3-ubyte", x[..., 0])
    _write_idx(raw / "train-labels-idx1-ubyte", y.astype(np.uint8))
    _write_idx(raw / "t10k-images-idx3-ubyte", xt[..., 0])
    _write_idx(raw / "t10k-labels-idx1-ubyte", yt.astype(np.uint8))
    return x, y, xt, yt


def _cifar_batch(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CIFAR rows: R plane, G plane, B plane
    with open(path, "wb") as fh:
        pickle.dump({"data": rows, "labels": y.tolist(), "batch_label": path.name}, fh, protocol=2)


def make_cifar(root: Path):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    (x, y), (xt, yt) = _patterns(20, 32, 3, 3), _patterns(8, 32, 3, 4)
    for i, chunk in enumerate(np.array_split(np.random.default_rng(0).permutation(len(y)), 5)):
        _cifar_batch(base / f"data_batch_{i + 1}", x[chunk], y[chunk])
    _cifar_batch(base / "test_batch", xt, yt)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird"]}, fh, protocol=2)
    return x, y, xt, yt


def make_folder(root: Path, channels: int = 3, per_class: int = 30, seed: int = 5) -> Path:
    x, y = _patterns(per_class, 12, channels, seed)
    for i, (img, c) in enumerate(zip(x, y, strict=True)):
        d = root / ("top", "left", "centre")[c]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if channels == 1 else img).save(d / f"{i:03d}.png")
    return root


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _small(in_channels: int, num_classes: int, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(in_channels, num_classes).eval()


def write_torchscript(path: Path, in_channels: int, num_classes: int) -> Path:
    torch.jit.script(_small(in_channels, num_classes)).save(str(path))
    return path


def write_onnx(path: Path, in_channels: int, num_classes: int) -> Path:
    torch.onnx.export(_small(in_channels, num_classes), (torch.zeros(1, in_channels, 16, 16),),
                      str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    return path


def write_state_dict(path: Path, arch: str, num_classes: int) -> Path:
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    torch.save(model.state_dict(), path)
    return path


# ---------------------------------------------------------------- four searches cover it all


def _setup_digits_torchscript(root: Path) -> dict:
    teacher = write_torchscript(root / "teacher.pt", 1, 10)
    return dict(dataset="digits", teacher=str(teacher), channels=1, classes=10)


def _setup_folder_onnx(root: Path) -> dict:
    folder = make_folder(root / "shapes")
    teacher = write_onnx(root / "teacher.onnx", 3, CLASSES)
    return dict(dataset=f"imagefolder:{folder}", teacher=str(teacher), channels=3,
                classes=CLASSES)


def _setup_mnist_torchvision(root: Path) -> dict:
    make_mnist(root / "data")
    weights = write_state_dict(root / "weights.pt", "shufflenet_v2_x0_5", CLASSES)
    # Grey images, RGB teacher: the channel is repeated for it.
    return dict(dataset="mnist", data_dir=root / "data", teacher=f"shufflenet_v2_x0_5:{weights}",
                channels=1, classes=CLASSES)


def _setup_cifar_trained(root: Path) -> dict:
    make_cifar(root / "data")
    return dict(dataset="cifar10", data_dir=root / "data", teacher=None, channels=3,
                classes=CLASSES)


CASES = {
    "digits+torchscript": _setup_digits_torchscript,
    "imagefolder+onnx": _setup_folder_onnx,
    "mnist+torchvision": _setup_mnist_torchvision,
    "cifar10+trained": _setup_cifar_trained,
}


@pytest.fixture(scope="module", params=list(CASES))
def searched(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param.replace("+", "_"))
    case = CASES[request.param](root)
    run_dir = root / "run"
    study = search_and_report(SearchOptions(study="byo", run_dir=run_dir, seed=1,
                                            dataset=case["dataset"],
                                            data_dir=case.get("data_dir"),
                                            teacher=case["teacher"], **TINY))
    return study, run_dir, case


@pytest.mark.slow
def test_search_runs_on_the_data_and_teacher_it_was_given(searched):
    study, run_dir, case = searched
    setup = study.user_attrs["setup"]
    spec = DataSpec.parse(case["dataset"], case.get("data_dir"))
    assert setup["dataset"] == spec.label and setup["data_dir"] == spec.data_dir
    assert setup["teacher"] == (parse_teacher(case["teacher"]).label if case["teacher"] else None)
    # Augmented by default on every source but digits; where it trained is each trial's own.
    assert setup["settings"]["augment"] == ("none" if spec.name == "digits" else "standard")
    assert "device" not in setup["settings"] and setup["settings"]["batch_size"] == 64
    data = load_data(spec, 16, run_dir / "data")
    assert (data.in_channels, data.num_classes) == (case["channels"], case["classes"])
    # The decoded images were cached once in the run directory, and match a fresh decode.
    if spec.name != "digits":
        caches = [p for p in (run_dir / "data").iterdir() if p.is_dir()]
        assert len(caches) == 1 and (caches[0] / "x_train.npy").is_file()
        fresh = load_data(spec, 16)
        assert torch.equal(fresh.val.x, data.val.x) and torch.equal(fresh.train.y, data.train.y)
        assert torch.equal(fresh.train.x, data.train.x[:])  # read per batch, same numbers
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    for t in complete:
        artifact = t.user_attrs["artifact"]
        dims = [d.dim_param or d.dim_value for d in
                onnx.load(artifact).graph.input[0].type.tensor_type.shape.dim]
        assert dims[1:] == [case["channels"], 16, 16]  # the exported input follows the data
        assert len(t.user_attrs["confusion"]) == case["classes"]
        again = onnx_accuracy(artifact, data.val.x.numpy(), data.val.y.numpy())
        assert again == t.values[0] == t.user_attrs["accuracy"]


def _teacher_accuracy(case: dict, data) -> float:
    """The teacher's validation accuracy, computed here independently of edgeshrink's loader."""
    x = data.val.x
    if case["teacher"] is None:
        return float("nan")
    if case["teacher"].endswith(".onnx"):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        s = ort.InferenceSession(case["teacher"], opts, providers=["CPUExecutionProvider"])
        logits = torch.from_numpy(s.run(None, {"x": x.numpy()})[0])
    elif ":" in case["teacher"]:
        arch, weights = case["teacher"].split(":", 1)
        model = torchvision.models.get_model(arch, weights=None, num_classes=case["classes"])
        model.load_state_dict(torch.load(weights, weights_only=True))
        with torch.no_grad():
            logits = model.eval()(x.expand(-1, 3, -1, -1))
    else:
        with torch.no_grad():
            logits = torch.jit.load(case["teacher"]).eval()(x)
    return float((logits.argmax(1) == data.val.y).float().mean())


@pytest.mark.slow
def test_teacher_is_the_reference_point_of_the_report(searched):
    study, run_dir, case = searched
    ref = study.user_attrs["teacher"]
    data = load_data(DataSpec.parse(case["dataset"], case.get("data_dir")), 16, run_dir / "data")
    if case["teacher"] is None:
        assert ref["source"].startswith("trained here")
        assert (run_dir / "teacher" / "teacher.pt").is_file()
    else:
        assert ref["source"] == parse_teacher(case["teacher"]).label
        assert ref["accuracy"] == _teacher_accuracy(case, data)
    assert 0 <= ref["accuracy"] <= 1
    assert ref["latency_ms"] > 0 and ref["params"] > 0 and ref["latency_method"] == "measured"
    html = (run_dir / "report.html").read_text()
    assert "teacher (reference)" in html and "acc_vs_teacher" in html
    assert f"accuracy {ref['accuracy']:.4f}" in html


def test_teacher_logits_are_computed_once_and_cached(searched):
    study, run_dir, case = searched
    data = load_data(DataSpec.parse(case["dataset"], case.get("data_dir")), 16, run_dir / "data")
    spec = parse_teacher(case["teacher"])
    settings = TrainSettings(**study.user_attrs["setup"]["settings"])  # the search's augment
    first = load_teacher(spec, data, run_dir / "teacher", seed=1, settings=settings)
    assert first.seconds == 0.0 and not first.trained_now  # read back, not recomputed
    assert first.train_logits.shape == (len(data.train.y), case["classes"])
    with torch.no_grad():
        direct = first.model.eval()(data.train.x[:16])
    assert torch.allclose(first.train_logits[:16], direct, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("searched", ["imagefolder+onnx"], indirect=True)
def test_build_reproduces_a_model_from_its_recorded_data_and_teacher(searched, tmp_path):
    study, run_dir, case = searched
    exported = tmp_path / "exported"
    ex.export_trial(study, 1, exported, run_dir=run_dir)
    config = load_build_config(exported / "config.yaml")
    assert config.dataset == study.user_attrs["setup"]["dataset"]
    assert config.teacher == parse_teacher(case["teacher"]).label
    built = tmp_path / "built"
    # A fresh cache: the data is decoded and the teacher's logits computed again from the recipe.
    assert main(["build", str(exported / "config.yaml"), "--out", str(built),
                 "--teacher-dir", str(tmp_path / "fresh")]) == 0
    assert (built / "model.onnx").read_bytes() == (exported / "model.onnx").read_bytes()


# ---------------------------------------------------------------- readers


def test_mnist_files_are_read_as_torchvision_reads_them(tmp_path):
    x, y, xt, yt = make_mnist(tmp_path)
    tv = torchvision.datasets.MNIST(str(tmp_path), train=True)
    assert np.array_equal(tv.data.numpy(), x[..., 0])  # the generated files are real MNIST
    raw = torchvision_files.MNIST.read(DataSpec.parse("mnist", tmp_path), 16)
    assert np.array_equal(raw.splits["test"][0][:, 0], xt[..., 0])
    assert np.array_equal(raw.splits["test"][1], yt)
    train_x, val_x = raw.splits["train"][0], raw.splits["val"][0]
    assert len(train_x) + len(val_x) == len(x)
    assert len(val_x) == CLASSES * 5  # a fifth of each class's 24 images, rounded
    originals = {img.tobytes() for img in x[..., 0]}
    assert all(img[0].tobytes() in originals for img in np.concatenate([train_x, val_x]))
    assert raw.classes == ("0 - zero", "1 - one", "2 - two")  # as many as the labels use
    fashion = tmp_path / "f"
    make_mnist(fashion, "FashionMNIST")
    assert load_data(DataSpec.parse("fashion-mnist", fashion), 16).num_classes == CLASSES


def test_cifar_batches_keep_channel_order_and_refuse_foreign_pickles(tmp_path):
    x, y, xt, yt = make_cifar(tmp_path)
    raw = torchvision_files.CIFAR10.read(DataSpec.parse("cifar10", tmp_path), 16)
    assert np.array_equal(raw.splits["test"][0], xt.transpose(0, 3, 1, 2))
    assert raw.classes == ("airplane", "automobile", "bird")
    data = load_data(DataSpec.parse("cifar10", tmp_path), 8)
    assert data.train.x.shape[1:] == (3, 8, 8) and data.pixel_scale == 255.0

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as fh:
        pickle.dump({"data": Payload(), "labels": [0]}, fh)
    with pytest.raises(EdgeshrinkError, match="data_batch_3: refusing to load builtins.print"):
        load_data(DataSpec.parse("cifar10", tmp_path), 16)


def test_image_folder_channels_classes_and_splits(tmp_path):
    grey = load_data(DataSpec.parse(f"imagefolder:{make_folder(tmp_path / 'g', 1)}"), 16)
    rgb = load_data(DataSpec.parse(f"imagefolder:{make_folder(tmp_path / 'c', 3)}"), 16)
    assert (grey.in_channels, rgb.in_channels) == (1, 3)
    assert rgb.classes == ("centre", "left", "top") and rgb.num_classes == 3
    # No split folders: a seeded stratified 60/20/20 split with every class in every part.
    assert (len(rgb.train.y), len(rgb.val.y), len(rgb.test.y)) == (54, 18, 18)
    for part in (rgb.train, rgb.val, rgb.test):
        assert set(part.y.tolist()) == {0, 1, 2}
    again = load_data(DataSpec.parse(f"imagefolder:{tmp_path / 'c'}"), 16)
    assert torch.equal(again.test.x, rgb.test.x)
    # train/ and test/ folders are used as given; validation is carved from train/.
    split = tmp_path / "split"
    make_folder(split / "train", per_class=10)
    make_folder(split / "test", per_class=4, seed=9)
    data = load_data(DataSpec.parse(f"imagefolder:{split}"), 16)
    assert (len(data.train.y), len(data.val.y), len(data.test.y)) == (24, 6, 12)


def test_decoded_images_are_cached_once_even_for_concurrent_starts(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "imgs")
    spec, cache = DataSpec.parse(f"imagefolder:{folder}"), tmp_path / "cache"
    results = [None] * 4
    decodes = []
    real_write = readers.FolderReader.write

    def counted_write(self, *args):  # the real (streaming) decoder, counted
        decodes.append(1)
        return real_write(self, *args)

    monkeypatch.setattr(readers.FolderReader, "write", counted_write)

    def start(i: int) -> None:
        results[i] = load_data(spec, 16, cache)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(r.train.x[:], results[0].train.x[:]) for r in results)
    assert len(decodes) == 1  # the file lock let one start decode; the others read its cache
    files = [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert len(files) == 1 and files[0].is_dir()  # one cache, no temporary left over
    assert sorted(p.name for p in files[0].iterdir()) == [
        "classes.json", *(f"{k}_{p}.npy" for k in "xy" for p in ("test", "train", "val"))]
    # The uncached load (everything in memory) gives the very same tensors.
    fresh = load_data(spec, 16)
    assert torch.equal(fresh.train.x, results[0].train.x[:])
    assert torch.equal(fresh.val.x, results[0].val.x)
    assert fresh.fingerprint() == results[0].fingerprint()
    # Later loads read the cache and decode nothing: an image overwritten with garbage of the
    # same size and time stamp goes unnoticed, while decoding it fails.
    victim = sorted(folder.rglob("*.png"))[0]
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert torch.equal(load_data(spec, 16, cache).train.x[:], results[0].train.x[:])
    with pytest.raises(EdgeshrinkError, match="cannot read image"):
        load_data(spec, 16)


# ---------------------------------------------------------------- one-line errors


def _folder_with_bad_image(root: Path) -> str:
    make_folder(root, per_class=4)
    (root / "top" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return f"imagefolder:{root}"


def _empty_folder(root: Path) -> str:
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "notes.txt").write_text("no images here")
    return f"imagefolder:{root}"


@pytest.mark.parametrize("make,message", [
    (lambda root: "imagenet", "unknown dataset 'imagenet'"),
    (lambda root: f"imagefolder:{root / 'missing'}", "image folder not found"),
    (_empty_folder, "no images found in"),
    (_folder_with_bad_image, "cannot read image"),
    (lambda root: "mnist", "MNIST not found"),
])
def test_bad_data_gives_one_line_and_exit_2(tmp_path, capsys, make, message):
    dataset = make(tmp_path / "data")
    code = main(["search", "--dataset", dataset, "--data-dir", str(tmp_path / "nothing"),
                 "--run-dir", str(tmp_path / "run"), "--trials", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    if message == "cannot read image":
        assert "broken.png" in err[0]
    if message == "MNIST not found":
        assert "--download" in err[0]


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("teach") / "imgs", per_class=4)
    return load_data(DataSpec.parse(f"imagefolder:{root}"), 16)


@pytest.mark.parametrize("write,message", [
    (lambda d: write_torchscript(d / "t.pt", 3, 5), "outputs 5 logits per image but the data "
                                                    "has 3 classes"),
    (lambda d: write_onnx(d / "t.onnx", 3, 7), "outputs 7 logits per image"),
    (lambda d: f"resnet18:{write_state_dict(d / 'w.pt', 'resnet18', 10)}",
     "outputs 10 logits per image"),
    (lambda d: d / "nope.onnx", "teacher file not found"),
    (lambda d: f"notanet:{d / 'w.pt'}", "'notanet' is not a torchvision classification"),
    (lambda d: write_torchscript(d / "t.pt", 1, 3), "cannot run on the data's images"),
])
def test_unusable_teachers_are_refused_with_one_line(tmp_path, folder_data, write, message):
    with pytest.raises(EdgeshrinkError, match=message) as info:
        load_teacher(parse_teacher(str(write(tmp_path))), folder_data, tmp_path / "cache")
    assert "\n" not in str(info.value)


def test_state_dict_with_pickled_code_is_refused(tmp_path, folder_data):
    path = tmp_path / "w.pt"
    torch.save({"weights": torch.zeros(1), "extra": threading.Lock}, path)
    with pytest.raises(EdgeshrinkError, match="weights_only=True"):
        load_teacher(parse_teacher(f"resnet18:{path}"), folder_data, tmp_path / "cache")
    with pytest.raises(EdgeshrinkError, match="not a TorchScript file.*resnet18:"):
        load_teacher(parse_teacher(str(path)), folder_data, tmp_path / "cache")
