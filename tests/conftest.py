"""Fixtures: a small CIFAR-10 in the official python layout, made offline in a temporary folder."""
import pickle
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# one clearly different colour per class, so a few steps of training can learn them
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 0, 128]])


def make_images(labels, rng):
    """uint8 HWC images: the class colour plus noise."""
    base = PALETTE[labels][:, None, None, :]
    noise = rng.normal(0, 25, size=(len(labels), 32, 32, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_batch(path, images, labels):
    """One batch file as the official archive holds it: channel-major rows of 3072 bytes."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {"batch_label": path.name, "labels": [int(v) for v in labels], "data": rows,
             "filenames": [f"{i}.png" for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar_folder(root, per_batch=40, test=100, seed=0):
    """root/cifar-10-batches-py with 5 x per_batch training and `test` test images."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        write_batch(folder / name, make_images(labels, rng), labels)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return Path(root)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data folder with 200 training and 100 test images (read-only by convention)."""
    return write_cifar_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny_copy(tmp_path):
    """A fresh tiny data folder a test may damage."""
    return write_cifar_folder(tmp_path / "data")
