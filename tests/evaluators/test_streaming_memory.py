"""A 224-pixel image folder is decoded, cached and trained on with bounded memory: the training
split never exists as one float tensor (evaluators/data/bank.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

TRAIN, HELD_OUT, SIZE = 1000, 20, 224
FLOAT32_TRAIN_MB = TRAIN * 3 * SIZE * SIZE * 4 / 2**20  # 574 MiB
BOUND_MB = 200  # peak resident growth allowed: about a third of the split as float32

SCRIPT = """
import json, resource, sys
from pathlib import Path
import torch
from torch import nn
from edgeshrink.evaluators.data.sources import DataSpec, load_data
from edgeshrink.evaluators.settings import TrainSettings
from edgeshrink.evaluators.training import train_distilled

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 2))
# Training's own buffers (convolution workspace, allocator pools) are part of the baseline:
# one warm-up epoch on two random batches, so what follows measures the data path.
warm = TrainSettings(batch_size=32, channels_last=False)
train_distilled(model, torch.randn(64, 3, 224, 224), torch.zeros(64, dtype=torch.long), None,
                epochs=1, settings=warm)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
root, cache = Path(sys.argv[1]), Path(sys.argv[2])
data = load_data(DataSpec.parse(f"imagefolder:{root}"), 224, cache)
after_decode = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
settings = TrainSettings(batch_size=32, augment="standard", channels_last=False)
loss = train_distilled(model, data.train.x, data.train.y, None, epochs=1, settings=settings)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"train": len(data.train.y), "shape": list(data.train.x.shape),
                  "type": type(data.train.x).__name__, "loss": loss,
                  "decode_mb": (after_decode - base) / 1024, "peak_mb": (peak - base) / 1024}))
"""


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Smooth 224-pixel JPEGs of two classes, in train/val/test folders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, SIZE, dtype=np.float32)
    for part, n in (("train", TRAIN), ("val", HELD_OUT), ("test", HELD_OUT)):
        for label in ("a", "b"):
            (root / part / label).mkdir(parents=True)
        for i in range(n):
            label = "ab"[i % 2]
            base = ramp[None, :] if label == "a" else ramp[:, None]
            pixels = np.broadcast_to(base, (SIZE, SIZE))[..., None] * rng.uniform(0.3, 1, 3)
            noise = rng.normal(0, 8, (SIZE, SIZE, 3))
            img = np.clip(pixels + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / part / label / f"{i}.jpg", quality=85)
    return root


@pytest.mark.slow
def test_peak_memory_stays_bounded_while_the_split_would_not_fit_as_float32(photo_folder,
                                                                             tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(photo_folder), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["train"] == TRAIN and out["shape"] == [TRAIN, 3, SIZE, SIZE]
    assert out["type"] == "ImageBank" and np.isfinite(out["loss"])
    # Decoding, caching, augmenting and training together grew the process by less than a
    # third of what the training split alone takes as float32.
    assert out["peak_mb"] < BOUND_MB < FLOAT32_TRAIN_MB, out


def test_an_image_bank_indexes_like_the_tensor_it_replaces(tmp_path):
    import pickle

    import torch

    from edgeshrink.evaluators.data.bank import ImageBank, to_float

    raw = np.random.default_rng(0).integers(0, 256, (10, 3, 12, 12), dtype=np.uint8)
    np.save(tmp_path / "x.npy", raw)
    bank = ImageBank(tmp_path / "x.npy", 8, mean=0.4, std=0.2)
    full = (to_float(raw, 8) - 0.4) / 0.2  # resized to 8 px, then normalised
    assert bank.shape == full.shape == (10, 3, 8, 8) and len(bank) == 10
    assert torch.equal(bank[:], full) and torch.equal(bank[2:7:2], full[2:7:2])
    assert torch.equal(bank[torch.tensor([9, 0, 9])], full[[9, 0, 9]])
    assert torch.equal(bank[-1], full[-1]) and torch.equal(bank[3], full[3])
    again = pickle.loads(pickle.dumps(bank))  # what a spawned loader worker receives
    assert torch.equal(again[4:6], full[4:6]) and again.path == bank.path
