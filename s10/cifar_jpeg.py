"""CIFAR-10 in the official python layout, built offline from a JPEG copy of it.

    python -m s10.cifar_jpeg ARCHIVE OUT_DIR    # writes OUT_DIR/cifar-10-batches-py/

ARCHIVE is a tar (or tar.gz) holding every image as train/<class>/<name>.jpg and
test/<class>/<name>.jpg, each class folder named as in CIFAR-10 (airplane ... truck): the layout of
the public JPEG copy that this repository's stand-in data was built from. The folder it writes
holds what the official one holds (five training batches, the test batch, batches.meta: pickled
dicts with the same keys and arrays), so s10.cifar reads it as it reads the official files. The
checksums differ, and the pixels are the JPEG files' decoded ones, on which a model scores a
little lower than on the lossless official files.
"""
import argparse
import io
import os
import pickle
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from s10.cifar import CLASSES, TEST_FILE, TRAIN_FILES
from s10.config import DataError

FOLDER = "cifar-10-batches-py"
# the images of a split are put in a fixed shuffled order, the archive's order permuted by these
# seeds: the stand-in data of this repository's records was built in this order, and the
# validation split (the last N training images) depends on it
ORDER_SEEDS = {"train": 0, "test": 1}


def read_split(archive, split):
    """(images N x 32 x 32 x 3 uint8, labels, file names) of `split`, in ORDER_SEEDS' order."""
    images, labels, names = [], [], []
    for member in archive:
        parts = member.name.split("/")
        if not (member.isfile() and len(parts) == 3 and parts[0] == split and parts[2].endswith(".jpg")):
            continue
        if parts[1] not in CLASSES:
            raise DataError(f"{member.name}: {parts[1]!r} is not a CIFAR-10 class ({', '.join(CLASSES)})")
        try:
            image = np.asarray(Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB"))
        except OSError as e:  # PIL's UnidentifiedImageError is one
            raise DataError(f"{member.name} in the archive is not a readable JPEG image ({e})") from None
        if image.shape != (32, 32, 3):
            raise DataError(f"{member.name} is {image.shape[1]} x {image.shape[0]}, not 32 x 32")
        images.append(image)
        labels.append(CLASSES.index(parts[1]))
        names.append(f"{parts[1]}_{parts[2][:-len('.jpg')]}.png")
    if not images:
        raise DataError(f"no {split}/<class>/*.jpg images in the archive: is it a JPEG copy of CIFAR-10?")
    order = np.random.default_rng(ORDER_SEEDS[split]).permutation(len(images))
    return np.stack(images)[order], [labels[i] for i in order], [names[i] for i in order]


def batch_bytes(label, images, labels, names):
    """One batch file as the official archive holds it: a pickled dict whose data rows are
    channel-major (1024 R, 1024 G, 1024 B bytes)."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {"batch_label": label, "labels": labels, "data": rows, "filenames": names}
    return pickle.dumps(batch, protocol=2)  # protocol 2: readable by Python 2 and 3, as the original


def build_from_jpeg(archive_path, out_dir):
    """Write out_dir/cifar-10-batches-py from the JPEG archive; returns that folder. A folder
    already there is left as it is."""
    dest = Path(out_dir) / FOLDER
    if dest.exists():
        return dest
    if not Path(archive_path).is_file():
        raise DataError(f"no archive at {archive_path}: give the path of the JPEG copy's .tar.gz")
    try:
        with tarfile.open(archive_path) as archive:
            train, test = read_split(archive, "train"), read_split(archive, "test")
    except (OSError, tarfile.TarError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]  # tarfile lists every method it tried
        raise DataError(f"cannot read {archive_path} as a tar archive ({reason})") from None
    # written beside it, then renamed: an interrupted build leaves no half folder behind
    tmp = dest.with_name(FOLDER + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for number, (name, part) in enumerate(zip(TRAIN_FILES, np.array_split(np.arange(len(train[1])), 5)), 1):
        images, labels, names = train[0][part], [train[1][i] for i in part], [train[2][i] for i in part]
        (tmp / name).write_bytes(batch_bytes(f"training batch {number} of 5", images, labels, names))
    (tmp / TEST_FILE).write_bytes(batch_bytes("testing batch 1 of 1", *test))
    meta = {"num_cases_per_batch": len(train[1]) // 5, "label_names": list(CLASSES), "num_vis": 3072}
    (tmp / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    os.replace(tmp, dest)
    return dest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", type=Path, help="the JPEG copy: train/<class>/*.jpg and test/<class>/*.jpg")
    parser.add_argument("out_dir", type=Path, help="where cifar-10-batches-py/ goes (then --data-dir OUT_DIR)")
    args = parser.parse_args(argv)
    if (args.out_dir / FOLDER).exists():
        print(f"{args.out_dir / FOLDER} is already there: nothing written (delete it to build it again)")
        return 0
    try:
        dest = build_from_jpeg(args.archive, args.out_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {dest}: train with --data-dir {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
