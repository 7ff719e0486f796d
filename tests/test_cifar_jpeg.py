"""python -m s10.cifar_jpeg: the official layout built from a JPEG copy, on a tiny archive made here."""
import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from s10 import cifar_jpeg
from s10.cifar import CLASSES, load_cifar10
from tests.conftest import PALETTE, ROOT, write_jpeg_archive


def test_the_command_writes_the_official_layout_with_each_image_under_its_label(tmp_path):
    archive = write_jpeg_archive(tmp_path / "jpeg.tar.gz", train_per_class=3, test_per_class=2)
    done = subprocess.run([sys.executable, "-m", "s10.cifar_jpeg", str(archive), str(tmp_path / "data")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    batch = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (6, 3072) and len(batch["labels"]) == 6
    assert pickle.loads((folder / "batches.meta").read_bytes(), encoding="latin1")["label_names"] == list(CLASSES)

    data = load_cifar10(tmp_path / "data", download=False)
    assert data["train_x"].shape == (30, 32, 32, 3) and data["test_x"].shape == (20, 32, 32, 3)
    assert np.bincount(data["train_y"]).tolist() == [3] * 10 and np.bincount(data["test_y"]).tolist() == [2] * 10
    for images, labels in ((data["train_x"], data["train_y"]), (data["test_x"], data["test_y"])):
        # each image, decoded and read back, is its class colour on top and black below, as drawn
        top, bottom = images[:, 2:14].mean((1, 2)), images[:, 18:30].mean((1, 2))
        assert np.abs(top - PALETTE[labels]).max() < 8 and bottom.max() < 8
    # the training images are not left grouped by class, as the archive holds them
    assert data["train_y"][:10].tolist() != sorted(data["train_y"][:10].tolist())

    again = subprocess.run([sys.executable, "-m", "s10.cifar_jpeg", str(archive), str(tmp_path / "data")],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "already there: nothing written" in again.stdout


def bad_archive(path, name, payload):
    with tarfile.open(path, "w:gz") as archive:
        member = tarfile.TarInfo(name)
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.tar.gz", "no archive at"),
    (lambda d: (d / "text.tar.gz").write_text("not a tar") and d / "text.tar.gz", "cannot read"),
    (lambda d: bad_archive(d / "a.tar.gz", "train/horse/0001.png", b"x"), "no train/<class>/*.jpg images"),
    (lambda d: bad_archive(d / "b.tar.gz", "train/horses/0001.jpg", b"x"), "'horses' is not a CIFAR-10 class"),
    (lambda d: bad_archive(d / "c.tar.gz", "train/horse/0001.jpg", b"x"), "not a readable JPEG image"),
])
def test_a_bad_archive_is_one_error_line_and_leaves_no_folder(tmp_path, capsys, make, message):
    assert cifar_jpeg.main([str(make(tmp_path)), str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()
    assert not os.path.exists(tmp_path / "data" / "cifar-10-batches-py.tmp")
