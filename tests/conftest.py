"""Fixtures: a small CIFAR-10 in the official python layout, made offline in a temporary folder;
helpers the test files share: a small stand-in model, train.py in a fresh interpreter (and killed
mid-run), per-epoch results to compare."""
import contextlib
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from s10 import recipe
from s10.cifar import CLASSES
from s10.config import Config
from s10.lr import make_scheduler

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
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


def jpeg_image(label):
    """A 32 x 32 image whose top half is the class colour and bottom half black: the label can be
    read back from a decoded JPEG of it, and so can which way up it is."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16] = PALETTE[label]
    return image


def write_jpeg_archive(path, train_per_class=3, test_per_class=1):
    """A tar.gz laid out as the public JPEG copy of CIFAR-10: train/<class>/NNNN.jpg, test/<class>/NNNN.jpg."""
    import io
    import tarfile

    from PIL import Image
    with tarfile.open(path, "w:gz") as archive:
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            for label, name in enumerate(CLASSES):
                for number in range(count):
                    buffer = io.BytesIO()
                    Image.fromarray(jpeg_image(label)).save(buffer, format="JPEG", quality=95)
                    member = tarfile.TarInfo(f"{split}/{name}/{number:04d}.jpg")
                    member.size = buffer.tell()
                    buffer.seek(0)
                    archive.addfile(member, buffer)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data folder with 200 training and 100 test images (read-only by convention)."""
    return write_cifar_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny_copy(tmp_path):
    """A fresh tiny data folder a test may damage."""
    return write_cifar_folder(tmp_path / "data")


class TinyNet(nn.Module):
    """The ResNet's interface (3 x 32 x 32 in, 10 logits out; conv, BatchNorm, dropout) at a
    fraction of its cost, for tests of the machinery around the model."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Dropout(dropout), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.layers(x)


# a prelude for train_command: the run builds TinyNet instead of the ResNet (as small_model does)
SMALL_MODEL = ("from s10 import recipe\nfrom tests.conftest import TinyNet\n"
               "recipe.build_model = lambda cfg, device: TinyNet(cfg.dropout).to(device)")


def train_command(*args, prelude=None):
    """The command that runs train.py with `args`; with `prelude` (Python code that may patch
    modules first), `python -c` runs the prelude and then train.main."""
    args = [*map(str, args), *(["--device", "cpu"] if "--device" not in args else [])]
    if prelude is None:
        return [sys.executable, "train.py", *args]
    return [sys.executable, "-c", f"{prelude}\nimport sys, train\nsys.exit(train.main(sys.argv[1:]))", *args]


def run_cli(*args, prelude=None, timeout=300):
    """train.py with `args` in a fresh interpreter, on the CPU unless `args` name a device."""
    return subprocess.run(train_command(*args, prelude=prelude), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def signals_itself(sig, epoch):
    """A prelude for train_command: the run sends itself `sig` once, right after the first
    read-back of its progress (engine.read_back, a training step's numbers) in epoch index `epoch`.
    A signal sent from outside when the log shows that step races the run: TinyNet's epochs take a
    tenth of a second, and on a busy machine a run had finished epoch 2 before a SIGKILL came."""
    return f"""
import os, signal
from s10 import engine
_read_back, _sent = engine.read_back, []
def read_back_then_signal(meter, bar, epoch, batch_id):
    _read_back(meter, bar, epoch, batch_id)
    if epoch == {epoch} and not _sent:
        _sent.append(True)
        os.kill(os.getpid(), signal.{signal.Signals(sig).name})
engine.read_back = read_back_then_signal
"""


def kill_in_epoch_2(*args, log, prelude=None, timeout=300):
    """Run train.py with `args` (which end with --out DIR) until it is SIGKILLed, without
    warning, after epoch 2's first step; its stdout goes to `log`."""
    command = train_command(*args, prelude=f"{prelude or ''}\n{signals_itself(signal.SIGKILL, epoch=1)}")
    with open(log, "w") as stdout:
        killed = subprocess.run(command, cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL, timeout=timeout,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert killed.returncode == -signal.SIGKILL, f"train.py ended with {killed.returncode}, not SIGKILL"


@contextlib.contextmanager
def held_by_another_process(run_dir):
    """Another Python process holds run_dir's lock (s10.run_lock) while the block runs; yields its PID."""
    code = ("import sys, time\nfrom s10.run_lock import run_folder_lock\n"
            "with run_folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def comparable(metrics):
    """Per-epoch results without the wall-clock times."""
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in metrics["epochs"]]


# train.py on the CPU in float32, where runs repeat to the last bit on any machine (bf16 and GPU
# kernels need not): 150 training images (3 steps of 50 an epoch), the last 50 held out
RECORDED_RUN = ["--epochs", 3, "--batch-size", 50, "--finder-steps", 12, "--val-split", 50, "--tta", "--precision", "fp32"]


@pytest.fixture(scope="session")
def recorded_run(tiny_data, tmp_path_factory):
    """(run folder, finished process) of one train.py run with RECORDED_RUN, LR finder included,
    shared by the tests that read a finished run. Read-only: copy it to change it."""
    out = tmp_path_factory.mktemp("recorded") / "run"
    process = run_cli("--data-dir", tiny_data, *RECORDED_RUN, "--out", out)
    assert process.returncode == 0, process.stderr
    return out, process


@pytest.fixture
def small_model(monkeypatch):
    """train.py builds TinyNet instead of the ResNet: for tests of the machinery around the model."""
    monkeypatch.setattr(recipe, "build_model", lambda cfg, device: TinyNet(cfg.dropout).to(device))


@pytest.fixture
def no_figures(monkeypatch):
    """train.py draws no figures: for tests of runs whose figures they do not look at (drawing
    them takes seconds a run on a small CPU; the figures have tests of their own)."""
    import train
    monkeypatch.setattr(train, "save_plots", lambda *args, **kwargs: None)


def scheduled_lrs(lr_max, lr_min, epochs, steps_per_epoch):
    """The LR of every step of lr.make_scheduler's One Cycle, stepped as training steps it."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr_min)
    scheduler = make_scheduler(optimizer, lr_max, lr_min, epochs, steps_per_epoch, Config().pct_start)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs
