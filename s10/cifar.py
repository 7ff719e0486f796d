"""CIFAR-10 on disk: the official python layout read through an unpickler that runs nothing,
the download of the official archive (md5 checked), and per-channel statistics."""
import os
import pickle
from pathlib import Path

import numpy as np

from s10.config import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # the official archive; only downloads are checked


def resolve_data_dir(data_dir=""):
    """The data folder: the argument, else $S10_DATA, else ./data."""
    return Path(data_dir or os.environ.get("S10_DATA") or "data").expanduser()


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR batch never holds."""


def _latin1_encode(text, encoding="latin1"):
    """codecs.encode as Python 3 pickles of bytes use it; no other codec (zlib, bz2...)."""
    if encoding != "latin1":
        raise RefusedGlobal(f"it asks for the {encoding!r} codec")
    return text.encode("latin1")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds: numpy arrays and plain Python values.

    Any other global (os.system, a class of some package...) is refused before it can run.
    """
    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode}
    # numpy 1 and 2 name their modules differently; both read the same arrays
    for core in ("numpy.core", "numpy._core"):
        ALLOWED[(core + ".multiarray", "_reconstruct")] = np.ndarray.__reduce__(np.zeros(1))[0]
        ALLOWED[(core + ".multiarray", "scalar")] = np.int64(0).__reduce__()[0]
        ALLOWED[(core + ".numeric", "_frombuffer")] = np.zeros(1).__reduce_ex__(5)[0]

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise RefusedGlobal(f"it asks for {module}.{name}")
        return self.ALLOWED[(module, name)]


def read_batch(path):
    """One batch file of the official python layout as (images N x 32 x 32 x 3 uint8, labels int64)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise DataError(f"{path} is not a CIFAR-10 batch file ({e}); nothing in it was run. "
                        "Replace it with a file from the official archive.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError) as e:
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}). "
                        "Delete the folder and download or copy CIFAR-10 again.") from None
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise DataError(f"{path} does not hold a CIFAR-10 batch (a dict with 'data' and 'labels')")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    # rows are channel-major (1024 R, 1024 G, 1024 B): to HWC for albumentations
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels.astype(np.int64)


def download_cifar10(root):
    """Download and unpack the official archive into `root`; its md5 is verified."""
    # imported here: torchvision is needed only to download, and importing it takes seconds
    from torchvision.datasets.utils import download_and_extract_archive
    try:
        download_and_extract_archive(CIFAR_URL, str(root), md5=CIFAR_MD5)
    except Exception as e:  # urllib, socket, checksum: all mean "no usable download"
        raise DataError(
            f"CIFAR-10 is not in {root / 'cifar-10-batches-py'} and could not be downloaded "
            f"({type(e).__name__}: {e}). Put a copy in the official python layout there, or point "
            "--data-dir / $S10_DATA at a folder that holds cifar-10-batches-py/.") from None


def load_cifar10(data_dir="", download=True):
    """CIFAR-10 as numpy arrays: dict with train_x, train_y, test_x, test_y, classes, source.

    Reads `<data_dir>/cifar-10-batches-py/` when it is there (any copy in the official
    layout, no checksum required); otherwise downloads the official archive.
    """
    root = resolve_data_dir(data_dir)
    folder = root / "cifar-10-batches-py"
    source = f"local copy in {folder}"
    if not folder.is_dir():
        if not download:
            raise DataError(f"CIFAR-10 is not in {folder}: put a copy in the official python "
                            "layout there, or point --data-dir / $S10_DATA at one.")
        download_cifar10(root)
        source = f"downloaded from {CIFAR_URL} (md5 verified) to {folder}"
    missing = [name for name in TRAIN_FILES + (TEST_FILE,) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} is incomplete: missing {', '.join(missing)}. "
                        "Copy the whole cifar-10-batches-py folder, or delete it to download again.")
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    test_x, test_y = read_batch(folder / TEST_FILE)
    return {"train_x": np.concatenate([x for x, _ in train]),
            "train_y": np.concatenate([y for _, y in train]),
            "test_x": test_x, "test_y": test_y, "classes": CLASSES, "source": source}


def channel_stats(images):
    """Per-channel mean and std of uint8 HWC images, on the 0..1 scale."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist())
