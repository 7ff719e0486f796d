"""Reusable helpers for S10: config, data, augmentation, LR finder, training, evaluation, plots.

Nothing here runs on import beyond definitions (and switching off albumentations' network
update check, which must happen before albumentations is imported). The notebook and
`train.py` call these functions and do the printing, plotting and saving themselves.
"""
import contextlib
import functools
import io
import json
import math
import os
import pickle
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from unittest import mock

# albumentations asks PyPI for a newer version on import unless this is set: no network calls.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from tqdm import tqdm  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # the official archive; only downloads are checked


class S10Error(Exception):
    """An error the user can fix: the message says what is wrong and what to do."""


class DataError(S10Error):
    pass


class ConfigError(S10Error):
    pass


class DivergedError(S10Error):
    pass


# --------------------------------------------------------------------------- config

@dataclass
class Config:
    """Every setting of a run. `train.py`'s flags come from these fields."""
    data_dir: str = ""            # "" -> $S10_DATA, else ./data
    epochs: int = 24
    batch_size: int = 512
    lr_max: float | None = None   # give both LRs to skip the LR finder
    lr_min: float | None = None
    lr_max_factor: float = 1.0    # finder: LR_max = this x the LR at the sweep's lowest loss
                                  # (1 beat 0.1 on a validation split; see the README)
    pct_start: float = 5 / 24     # One Cycle peaks at the end of epoch 5 of 24
    dropout: float = 0.05         # small: every conv has one, and cutout already regularises
    weight_decay: float = 0.0     # plain Adam, as the assignment asks
    label_smoothing: float = 0.0  # CrossEntropyLoss(label_smoothing=...): still the assignment's loss
    cutout_p: float = 1.0         # chance of the 8x8 hole in each image (1: in every image)
    channels_last: bool = True    # NHWC layout: faster convolutions (measured by bench.py)
    amp: bool = True              # mixed precision: bf16 (CUDA from Ampere, CPUs with bf16
                                  # instructions), fp16 + grad scaler (older GPUs), else fp32
    loader: str = "auto"          # albumentations | device (whole dataset on the device) | auto
    tta: bool = True              # also report accuracy with horizontal-flip TTA (beside,
                                  # never instead of, the plain accuracy)
    compile: bool = False         # torch.compile the model (CUDA only)
    subset: int | None = None     # train on the first N training images (quick runs)
    val_split: int = 0            # N > 0: hold out the last N training images and evaluate on
                                  # them instead of the test set (to choose settings honestly)
    finder_start_lr: float = 1e-7
    finder_end_lr: float = 10.0
    finder_steps: int = 100
    seed: int = 1
    device: str = "auto"          # auto: CUDA, else MPS, else CPU
    workers: int | None = None    # None: suited to the device (see default_workers)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A Config from saved values; names this version does not know are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def validate_config(cfg):
    """Raise ConfigError naming the first setting that cannot work."""
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "finder_steps": cfg.finder_steps}
    for name, value in positive.items():
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    if (cfg.lr_max is None) != (cfg.lr_min is None):
        raise ConfigError("give both --lr-max and --lr-min (to skip the LR finder) or neither")
    for name in ("lr_max", "lr_min", "finder_start_lr", "finder_end_lr"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if cfg.lr_max is not None and cfg.lr_min >= cfg.lr_max:
        raise ConfigError(f"lr_min ({cfg.lr_min:g}) must be smaller than lr_max ({cfg.lr_max:g})")
    if not 0 < cfg.lr_max_factor <= 1:  # past the lowest loss the sweep's loss only rises
        raise ConfigError(f"lr_max_factor must be in (0, 1], got {cfg.lr_max_factor!r}")
    if cfg.finder_start_lr >= cfg.finder_end_lr:
        raise ConfigError("finder_start_lr must be smaller than finder_end_lr")
    if not 0 < cfg.pct_start < 1:
        raise ConfigError(f"pct_start must be between 0 and 1, got {cfg.pct_start!r}")
    if not 0 <= cfg.dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {cfg.weight_decay!r}")
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing!r}")
    if not 0 <= cfg.cutout_p <= 1:
        raise ConfigError(f"cutout_p must be in [0, 1], got {cfg.cutout_p!r}")
    if cfg.subset is not None and cfg.subset <= 0:
        raise ConfigError(f"subset must be a positive number of images, got {cfg.subset!r}")
    if not isinstance(cfg.val_split, int) or cfg.val_split < 0:
        raise ConfigError(f"val_split must be a whole number of images >= 0, got {cfg.val_split!r}")
    if cfg.workers is not None and cfg.workers < 0:
        raise ConfigError(f"workers must be >= 0, got {cfg.workers!r}")
    if cfg.loader not in LOADERS:
        raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {cfg.loader!r}")
    get_device(cfg.device)  # raises for an unknown or missing device


LOADERS = ("auto", "albumentations", "device")


def config_fields():
    """(name, type, default) of every Config field, for building CLI flags."""
    return [(f.name, f.type, f.default) for f in fields(Config)]


# --------------------------------------------------------------------------- device, seeds

def get_device(name="auto"):
    """The torch.device for `name`: auto picks CUDA, else MPS, else CPU."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    available = {"cpu": True, "mps": has_mps,
                 "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()}
    if not available.get(device.type, False):
        raise ConfigError(f"device {name!r} is not available on this machine: use auto or cpu")
    if device.type == "cuda":
        # every batch has the same shapes, so cuDNN's one-off search for the fastest
        # convolution algorithms pays back within the first epoch
        torch.backends.cudnn.benchmark = True
    return device


def seed_everything(seed):
    """Seed Python, numpy and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_workers(device):
    """DataLoader workers: none on CPU, where both cores already run the training maths and
    augmentation costs about 2% of a bf16 step (bench.py); on an accelerator up to 4, never
    more than the CPUs."""
    if device.type == "cpu":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cpus or 1))


def cpu_has_native_bf16(cpuinfo="/proc/cpuinfo"):
    """True if the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16), read from Linux's
    cpuinfo; False where that cannot be read (macOS, Windows), so those stay in fp32."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def autocast_dtype(cfg, device):
    """The mixed-precision dtype for this device, or None for fp32.

    CUDA: bf16 where the GPU supports it (no loss scaling needed), else fp16 with a grad scaler.
    CPU: bf16 where the CPU has bf16 instructions (bench.py's bare step ran 1.75x faster than
    fp32 on a 2-core AVX512-BF16 machine), else fp32: without them bf16 is emulated, which is
    not expected to pay (not measured here). MPS: fp32.
    """
    if not cfg.amp:
        return None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if device.type != "cuda":
        return None
    # is_bf16_supported() also says yes to emulated bf16 (T4, V100): ask for Ampere or newer
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def precision_name(dtype):
    """'bfloat16', 'float16' or 'float32' (for None: no autocast), for logs and records."""
    return str(dtype or torch.float32).replace("torch.", "")


def precision_dtype(name):
    """The autocast dtype a record's precision name stands for (None: float32, no autocast)."""
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name)


def autocast(device, dtype):
    """Autocast to `dtype` on `device`, or no context at all for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def make_grad_scaler(dtype):
    """A GradScaler that is active only for fp16 (bf16 and fp32 need no loss scaling)."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def resolve_loader(cfg, device):
    """auto: the device-resident loader on CUDA, albumentations elsewhere."""
    if cfg.loader != "auto":
        return cfg.loader
    return "device" if device.type == "cuda" else "albumentations"


def maybe_compile(model, cfg, device, log=print):
    """torch.compile(model) if the config asks and the device is CUDA, else the model itself."""
    if not cfg.compile:
        return model
    if device.type != "cuda":
        log(f"note: --compile is used on CUDA only; training uncompiled on {device.type}")
        return model
    return torch.compile(model)


# --------------------------------------------------------------------------- data

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
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as e:
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


# --------------------------------------------------------------------------- augmentation

def train_transforms(mean, std, cutout_p=1.0):
    """Pad to 40 (reflect) + random crop 32, horizontal flip, one 8x8 hole of the mean (in each
    image with probability `cutout_p`), normalise."""
    mean_pixel = tuple(round(m * 255) for m in mean)  # the hole is cut on the uint8 image
    return A.Compose([
        A.PadIfNeeded(min_height=40, min_width=40, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomCrop(height=32, width=32),
        A.HorizontalFlip(p=0.5),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(8, 8),
                        hole_width_range=(8, 8), fill=mean_pixel, p=cutout_p),
        A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ToTensorV2(),
    ])


def test_transforms(mean, std):
    """Normalise only."""
    return A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])


class CIFAR10Dataset(Dataset):
    """uint8 HWC images and int labels, passed through an albumentations transform."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(image=self.images[index])["image"], int(self.labels[index])


def _seed_worker_transform(worker_id):
    # every worker holds a copy of the transform's RNG: give each its own seed, drawn from the
    # loader's generator, so workers differ and runs with the same seed repeat
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)


def split_data(data, cfg):
    """(train_x, train_y, eval_x, eval_y): the images each epoch trains and is evaluated on.

    Evaluation is on the test set, or with `cfg.val_split` = N on the last N training images,
    which training then leaves out. `cfg.subset` = N trains on the first N of the rest.
    """
    train_x, train_y = data["train_x"], data["train_y"]
    eval_x, eval_y = data["test_x"], data["test_y"]
    if cfg.val_split:
        if cfg.val_split >= len(train_x):
            raise ConfigError(f"val_split {cfg.val_split} leaves none of the {len(train_x)} training images")
        n = cfg.val_split
        train_x, train_y, eval_x, eval_y = train_x[:-n], train_y[:-n], train_x[-n:], train_y[-n:]
    if cfg.subset is not None:
        if cfg.subset > len(train_x):
            raise ConfigError(f"subset {cfg.subset} is larger than the {len(train_x)} training images")
        train_x, train_y = train_x[:cfg.subset], train_y[:cfg.subset]
    return train_x, train_y, eval_x, eval_y


def make_loaders(data, cfg, device):
    """(train_loader, test_loader, mean, std) for the config; stats from the training images.
    The "test" loader holds the evaluation images of `split_data` (the validation split if any)."""
    train_x, train_y, test_x, test_y = split_data(data, cfg)
    mean, std = channel_stats(train_x)
    if resolve_loader(cfg, device) == "device":
        from device_loader import DeviceLoader
        common = {"batch_size": cfg.batch_size, "mean": mean, "std": std, "device": device,
                  "seed": cfg.seed, "channels_last": cfg.channels_last}
        return (DeviceLoader(train_x, train_y, train=True, cutout_p=cfg.cutout_p, **common),
                DeviceLoader(test_x, test_y, train=False, **common), mean, std)
    workers = default_workers(device) if cfg.workers is None else cfg.workers
    # no persistent workers: reseed_loader's per-epoch seed must reach fresh workers each epoch
    common = {"batch_size": cfg.batch_size, "num_workers": workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(
        CIFAR10Dataset(train_x, train_y, train_transforms(mean, std, cfg.cutout_p)), shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=_seed_worker_transform,
        **common)
    test_loader = DataLoader(
        CIFAR10Dataset(test_x, test_y, test_transforms(mean, std)), shuffle=False,
        **common)
    return train_loader, test_loader, mean, std


def reseed_loader(loader, seed):
    """Make the next pass over `loader` (shuffle and augmentation) a function of `seed` alone.

    Called once per epoch with (run seed, epoch), so a resumed run sees the same batches.
    """
    if hasattr(loader, "set_seed"):  # the device-resident loader
        loader.set_seed(seed)
        return
    if loader.generator is not None:
        loader.generator.manual_seed(seed)
    if loader.num_workers == 0:  # workers are seeded from the generator instead
        loader.dataset.transform.set_random_seed(seed % 2**32)


def denormalize(images, mean, std):
    """Normalised NCHW tensors back to NHWC float images in [0, 1] for plotting."""
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (images.cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def epoch_seed(seed, epoch):
    """A seed for one epoch of a run, distinct for every (seed, epoch) pair."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


# --------------------------------------------------------------------------- LR finder

def lr_range_test(model, optimizer, criterion, loader, device, start_lr=1e-7, end_lr=10.0, steps=100,
                  amp_dtype=None):
    """Exponential LR sweep with torch-lr-finder on `loader` (training data only), under the
    same mixed precision (`amp_dtype`) as training.

    Returns {"lrs": [...], "losses": [...]} (losses smoothed by the finder). The model and
    optimizer are restored to their state before the sweep.
    """
    with warnings.catch_warnings():
        # torch-lr-finder imports tqdm.autonotebook, which warns that it is experimental
        warnings.simplefilter("ignore")
        from torch_lr_finder import LRFinder, lr_finder
    amp = {} if amp_dtype is None else {
        "amp_backend": "torch", "amp_config": {"device_type": device.type, "dtype": amp_dtype},
        "grad_scaler": make_grad_scaler(amp_dtype)}
    finder = LRFinder(model, optimizer, criterion, device=device, **amp)
    text_bar = functools.partial(tqdm, file=sys.stdout, ncols=110, desc="LR sweep")
    try:
        # its bar as a text bar like ours (see train_one_epoch), and its hint about its own
        # plot() silenced: we draw our own
        with mock.patch.object(lr_finder, "tqdm", text_bar), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings():
            # fp16: as in train_one_epoch, a skipped overflowing step makes torch warn that the
            # finder's schedule moved first
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            # range_test takes a DataLoader, or any loader wrapped in its iterator class
            batches = loader if isinstance(loader, DataLoader) else lr_finder.TrainDataLoaderIter(loader)
            finder.range_test(batches, start_lr=start_lr, end_lr=end_lr, num_iter=steps,
                              step_mode="exp", diverge_th=5)
    finally:
        finder.reset()
    return {"lrs": list(map(float, finder.history["lr"])), "losses": list(map(float, finder.history["loss"]))}


FALLBACK_LR_MAX = 1e-3  # Adam's usual default, used only when the sweep gives no usable curve
FALLBACK_RATIO = 100    # LR_max / LR_min when the curve gives no separate LR_min


def suggest_lrs(lrs, losses, drop=0.1, lr_max_factor=1.0):
    """(lr_max, lr_min, notes) read off a range test's smoothed loss curve.

    LR_max: `lr_max_factor` x the LR at the lowest loss. The default, 1, takes the lowest point
            itself; 0.1 is fastai's more cautious rule, where the loss still falls steeply.
    LR_min: the first LR at which the loss has covered `drop` (10%) of its fall from the start
            of the sweep to its lowest point: where training starts to make progress.
    Fallbacks, each named in `notes`: no usable curve (diverged at once, too few finite points)
    gives LR_max = 1e-3; an LR_min not below LR_max gives LR_min = LR_max / 100.
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    finite = np.isfinite(losses)
    end = len(losses) if finite.all() else int(np.argmin(finite))  # stop at the first NaN/inf
    lrs, losses, notes = lrs[:end], losses[:end], []
    best = int(np.argmin(losses)) if end else 0
    if end < 5 or best == 0:
        notes.append(f"the LR sweep gave no usable curve ({end} finite points, lowest loss at "
                     f"step {best}): falling back to LR_max = {FALLBACK_LR_MAX:g}")
        lr_max = FALLBACK_LR_MAX
        return lr_max, lr_max / FALLBACK_RATIO, notes
    lr_max = lrs[best] * lr_max_factor
    target = losses[0] - drop * (losses[0] - losses[best])
    lr_min = lrs[int(np.argmax(losses[:best + 1] <= target))]
    if lr_min >= lr_max:
        notes.append(f"the curve's LR_min ({lr_min:.2e}) is not below LR_max ({lr_max:.2e}): "
                     f"using LR_max / {FALLBACK_RATIO}")
        lr_min = lr_max / FALLBACK_RATIO
    return float(lr_max), float(lr_min), notes


# --------------------------------------------------------------------------- training

def make_criterion(cfg):
    """The training loss: cross-entropy, with the config's label smoothing."""
    return torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


# evaluation always reports plain cross-entropy, so held-out losses compare across settings
# whatever the training loss smooths
EVAL_CRITERION = torch.nn.CrossEntropyLoss()


def make_optimizer(model, cfg):
    """Adam; its LR is driven by the One Cycle schedule."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr_min or 1e-3, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, lr_max, lr_min, epochs, steps_per_epoch, pct_start=5 / 24):
    """One Cycle without annihilation, stepped every batch.

    Rises linearly from lr_min to lr_max over the first pct_start of the steps (epoch 5 of 24),
    then falls linearly back to lr_min at the last step: final_div_factor=1 keeps it from
    ever going below lr_min.
    """
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr_max, total_steps=epochs * steps_per_epoch, pct_start=pct_start,
        anneal_strategy="linear", div_factor=lr_max / lr_min, final_div_factor=1.0,
        three_phase=False)


class Meter:
    """Running loss and accuracy over batches: the one bookkeeping that train and test share."""

    def __init__(self):
        self.loss_sum, self.correct, self.count = 0.0, 0, 0

    def update(self, loss, logits, targets):
        n = targets.size(0)
        self.loss_sum += float(loss) * n
        self.correct += int((logits.argmax(1) == targets).sum())
        self.count += n

    @property
    def loss(self):
        return self.loss_sum / max(self.count, 1)

    @property
    def acc(self):
        return 100.0 * self.correct / max(self.count, 1)


def train_one_epoch(model, loader, optimizer, scheduler, criterion, device, epoch=0,
                    amp_dtype=None, scaler=None):
    """One pass over `loader`; returns {"train_loss", "train_acc", "lrs"} (the LR of every step).

    `amp_dtype` (bf16/fp16) runs the forward pass under autocast; `scaler` scales fp16 losses.
    """
    scaler = scaler or make_grad_scaler(None)
    model.train()
    meter, lrs = Meter(), []
    # a text bar on stdout, not tqdm.auto's widget: it reads like the assignment's log and
    # stays readable in the notebook's stored outputs (a widget is stored at 0%)
    bar = tqdm(loader, file=sys.stdout, ncols=110)
    for batch_id, (images, targets) in enumerate(bar):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            logits = model(images)
            loss = criterion(logits, targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()
            raise DivergedError(f"the training loss became {loss_value} at epoch {epoch + 1}, "
                                f"step {batch_id + 1}: lower --lr-max (or let the LR finder pick it)")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with warnings.catch_warnings():
            # fp16: the scaler skips a step whose gradients overflowed (often the first), and
            # torch then warns that the schedule moved first; it is meant to move every batch
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        meter.update(loss_value, logits.detach(), targets)
        bar.set_description(f"Train: Loss={loss_value:.4f} Batch_id={batch_id} Accuracy={meter.acc:.2f}")
    return {"train_loss": meter.loss, "train_acc": meter.acc, "lrs": lrs}


@torch.no_grad()
def evaluate(model, loader, criterion, device, tta=False, amp_dtype=None):
    """Loss and accuracy on `loader`: {"test_loss", "test_acc", "correct", "total"}.

    With `tta`, also "test_loss_tta" and "test_acc_tta": logits averaged over the image and its
    horizontal flip.
    """
    model.eval()
    meter, tta_meter = Meter(), Meter()
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(images).float()
            if tta:
                tta_logits = (logits + model(images.flip(3)).float()) / 2
        meter.update(criterion(logits, targets), logits, targets)
        if tta:
            tta_meter.update(criterion(tta_logits, targets), tta_logits, targets)
    result = {"test_loss": meter.loss, "test_acc": meter.acc, "correct": meter.correct, "total": meter.count}
    if tta:
        result.update(test_loss_tta=tta_meter.loss, test_acc_tta=tta_meter.acc)
    return result


def evaluation_name(cfg):
    """What each epoch is evaluated on: the test set, or with `val_split` the held-out images."""
    return "Validation set" if cfg.val_split else "Test set"


def format_test_line(result, name="Test set"):
    line = (f"{name}: Average loss: {result['test_loss']:.4f}, Accuracy: "
            f"{result['correct']}/{result['total']} ({result['test_acc']:.2f}%)")
    if "test_acc_tta" in result:
        line += f", with flip TTA: {result['test_acc_tta']:.2f}%"
    return line


def fit(model, train_loader, test_loader, optimizer, scheduler, criterion, device, epochs,
        seed=0, history=None, on_epoch_end=None, log=print, tta=False, amp_dtype=None, scaler=None,
        eval_name="Test set"):
    """Train to `epochs`, continuing `history` ({"epochs": [...], "lrs": [...]}) if given.

    Each epoch reseeds the loader from (seed, epoch), logs the assignment's test line and
    calls `on_epoch_end(history)` (where train.py writes its checkpoint). Returns the history.
    """
    history = history if history is not None else {"epochs": [], "lrs": []}
    for epoch in range(len(history["epochs"]), epochs):
        reseed_loader(train_loader, epoch_seed(seed, epoch))
        log(f"Epoch {epoch + 1}/{epochs}")
        start = time.perf_counter()
        train = train_one_epoch(model, train_loader, optimizer, scheduler, criterion, device, epoch,
                                amp_dtype, scaler)
        test = evaluate(model, test_loader, EVAL_CRITERION, device, tta, amp_dtype)
        log(format_test_line(test, eval_name))
        history["lrs"] += train.pop("lrs")
        history["epochs"].append({"epoch": epoch + 1, **train, **test,
                                  "seconds": time.perf_counter() - start})
        if on_epoch_end is not None:
            on_epoch_end(history)
    return history


@torch.no_grad()
def predict(model, loader, device, amp_dtype=None):
    """(predictions, targets) as numpy arrays, in the loader's order. In the training precision
    (`amp_dtype`) they agree with the accuracy `evaluate` reported for the same (uncompiled)
    model on a CPU; GPU kernels and torch.compile may move a borderline image or two."""
    model.eval()
    preds, targets = [], []
    for images, labels in loader:
        with autocast(device, amp_dtype):
            preds.append(model(images.to(device)).argmax(1).cpu())
        targets.append(labels.cpu())
    return torch.cat(preds).numpy(), torch.cat(targets).numpy()


def confusion_matrix(preds, targets, num_classes=len(CLASSES)):
    """Counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (targets, preds), 1)
    return counts


def per_class_accuracy(counts):
    """Accuracy (%) of each true class from a confusion matrix."""
    return 100.0 * np.diag(counts) / np.maximum(counts.sum(1), 1)


# --------------------------------------------------------------------------- plots

def image_grid(images, titles, ncols=8, size=1.6):
    """A figure of HWC images (uint8 or float in [0, 1]) with a title above each."""
    nrows = max(1, math.ceil(len(images) / ncols))
    fig = Figure(figsize=(ncols * size, nrows * (size + 0.3)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    return fig


def augmented_samples(images, mean, std, count=32, seed=0, cutout_p=1.0):
    """The first `count` uint8 images after the albumentations training augmentation, as
    images in [0, 1] for plotting."""
    transform = train_transforms(mean, std, cutout_p)
    transform.set_random_seed(seed)
    tensors = [transform(image=image)["image"] for image in images[:count]]
    return denormalize(torch.stack(tensors), mean, std)


def plot_samples(images, labels, classes=CLASSES, ncols=8):
    """A grid of images titled with their class names."""
    return image_grid(images, [classes[label] for label in labels], ncols)


def plot_misclassified(images, targets, preds, classes=CLASSES, ncols=8):
    """A grid of misclassified images titled 'true -> predicted'."""
    titles = [f"{classes[t]} -> {classes[p]}" for t, p in zip(targets, preds)]
    return image_grid(images, titles, ncols, size=1.8)


def plot_lr_finder(lrs, losses, lr_max, lr_min):
    """The range test's loss against LR (log scale), with LR_max and LR_min marked."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.axvline(lr_max, color="tab:red", linestyle="--", label=f"LR_max = {lr_max:.2e}")
    ax.axvline(lr_min, color="tab:green", linestyle="--", label=f"LR_min = {lr_min:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)",
           title="LR range test (Adam)")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:  # keep the diverging tail from squashing the useful part of the curve
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.05)
    ax.legend()
    return fig


def plot_history(epochs, eval_name="test"):
    """Train and evaluation (`eval_name`) loss and accuracy per epoch, from fit's history["epochs"]."""
    x = [e["epoch"] for e in epochs]
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "acc", "accuracy (%)")):
        ax.plot(x, [e[f"train_{key}"] for e in epochs], marker="o", label="train")
        ax.plot(x, [e[f"test_{key}"] for e in epochs], marker="o", label=eval_name)
        ax.set(xlabel="epoch", ylabel=label, title=f"{label.split()[0].capitalize()} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_lr_schedule(lrs, steps_per_epoch):
    """The LR of every training step, against epochs."""
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(len(lrs)) / steps_per_epoch, lrs)
    ax.set(xlabel="epoch", ylabel="learning rate", title="One Cycle schedule (per step)")
    ax.grid(alpha=0.3)
    return fig


def plot_confusion_matrix(counts, classes=CLASSES, eval_name="test set"):
    """The confusion matrix as a heat map with counts."""
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted",
           ylabel="true", title=f"Confusion matrix ({eval_name})")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    threshold = counts.max() / 2
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > threshold else "black")
    return fig


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "rng", "config", "history", "lr_max", "lr_min"}


def write_json(path, obj):
    """Write JSON atomically: a reader (or a kill) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _rng_states():
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()  # the current GPU's: runs use one GPU
    return states


def _set_rng_states(states):
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def save_checkpoint(path, model, optimizer, scheduler, state, scaler=None):
    """Model, optimizer, scheduler, grad scaler, RNG states and `state` (plain data) to `path`,
    atomically: written to a temporary file, then renamed, so a kill leaves the previous
    checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_states(),
                "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
                **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    """A checkpoint written by save_checkpoint, loaded with weights_only=True (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: the run there has not finished an epoch yet "
                          "(start it again with the same flags) or the folder is wrong")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle: all mean "not a usable checkpoint"
        lines = str(e).splitlines() or [""]
        reason = next((l.strip() for l in lines if "WeightsUnpickler error" in l), lines[0])
        raise ConfigError(f"{path} is not a readable checkpoint of this project ({reason}); "
                          "nothing in it was run") from None
    missing = CHECKPOINT_KEYS - set(checkpoint) if isinstance(checkpoint, dict) else CHECKPOINT_KEYS
    if missing:
        raise ConfigError(f"{path} is not a checkpoint of this project (no {', '.join(sorted(missing))})")
    return checkpoint


def restore_training_state(checkpoint, model, optimizer, scheduler, scaler=None):
    """Load model, optimizer, scheduler, grad scaler and RNG states from a loaded checkpoint."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_states(checkpoint["rng"])


# --------------------------------------------------------------------------- runs

CHECKPOINT = "checkpoint.pt"
# settings that change how a run is computed, not what is trained: a resumed run may change them
RUNTIME_SETTINGS = {"device", "workers", "data_dir", "amp", "loader", "compile", "tta", "channels_last"}


def config_conflicts(saved, cfg):
    """Settings of `cfg` that differ from a saved run's config (runtime settings may differ)."""
    # a setting the saved run predates is compared with its default: the run ran with that
    defaults = Config().to_dict()
    return {name: (value, saved.get(name, defaults[name])) for name, value in cfg.to_dict().items()
            if name not in RUNTIME_SETTINGS and saved.get(name, defaults[name]) != value}


def find_checkpoint(run_dir, cfg=None):
    """The last checkpoint in `run_dir`, or None if it has none; with `cfg`, refuses a run
    whose saved config differs, so an edited config never silently continues an old run."""
    if not (Path(run_dir) / CHECKPOINT).exists():
        return None
    checkpoint = load_checkpoint(Path(run_dir) / CHECKPOINT)
    conflicts = config_conflicts(checkpoint["config"], cfg) if cfg is not None else {}
    if conflicts:
        listed = "; ".join(f"{k} = {new!r} (the run has {old!r})" for k, (new, old) in conflicts.items())
        raise ConfigError(f"{run_dir} holds a run with another config: {listed}. "
                          "Use another run folder, or delete this one to start again.")
    return checkpoint


def build_model(cfg, device):
    """The assignment's ResNet on `device`, in channels_last layout if the config asks."""
    from models.resnet import ResNet
    model = ResNet(dropout=cfg.dropout).to(device)
    if cfg.channels_last:  # convolutions then keep their activations in NHWC as well
        model = model.to(memory_format=torch.channels_last)
    return model


def choose_lrs(cfg, model, optimizer, criterion, loader, device, checkpoint=None, log=print):
    """(lr_max, lr_min, finder record or None): from a checkpoint being resumed, else from the
    config when it gives both, else from an LR range test on `loader` (training data)."""
    if checkpoint is not None:
        return checkpoint["lr_max"], checkpoint["lr_min"], checkpoint["lr_finder"]
    if cfg.lr_max is not None:
        return cfg.lr_max, cfg.lr_min, None
    log(f"LR finder: {cfg.finder_steps} steps from {cfg.finder_start_lr:g} to {cfg.finder_end_lr:g}")
    sweep = lr_range_test(model, optimizer, criterion, loader, device,
                          cfg.finder_start_lr, cfg.finder_end_lr, cfg.finder_steps,
                          amp_dtype=autocast_dtype(cfg, device))
    lr_max, lr_min, notes = suggest_lrs(sweep["lrs"], sweep["losses"], lr_max_factor=cfg.lr_max_factor)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    log(f"LR_max = {lr_max:.3e}, LR_min = {lr_min:.3e}")
    return lr_max, lr_min, {**sweep, "notes": notes}


def run_record(cfg, device, data, lr_max, lr_min, finder, mean, std, commit=None):
    """What metrics.json reports about a run besides its config and history.

    `commit`: read it when the run starts (the checkout may move on during a long LR sweep);
    by default it is read now.
    """
    dtype = autocast_dtype(cfg, device)
    return {"device": device_name(device), "data": data["source"], "commit": commit or git_commit(),
            "precision": precision_name(dtype),
            "loader": resolve_loader(cfg, device),
            "evaluated_on": (f"validation split: the last {cfg.val_split} training images (not the test set)"
                             if cfg.val_split else "test set"),
            "torch": str(torch.__version__), "lr_max": lr_max, "lr_min": lr_min,
            "lr_finder": finder, "mean": mean, "std": std}


def device_name(device):
    """'cpu (N threads)' or the GPU's name, for the record."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def git_commit():
    """The checked-out commit of this repository, or None outside a git checkout."""
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train_with_checkpoints(run_dir, cfg, model, optimizer, criterion, train_loader, test_loader,
                           device, record, checkpoint=None, log=print):
    """fit() with a checkpoint and metrics.json written to `run_dir` after every epoch.

    `record` holds what metrics.json reports besides the history (lr_max, lr_min, data...).
    Given a checkpoint, continues it: same schedule step, same RNG, history kept.
    Returns the metrics dict, also written to run_dir/metrics.json.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    scheduler = make_scheduler(optimizer, record["lr_max"], record["lr_min"], cfg.epochs,
                               len(train_loader), cfg.pct_start)
    amp_dtype = autocast_dtype(cfg, device)
    scaler = make_grad_scaler(amp_dtype)
    history, seconds_before = None, 0.0
    if checkpoint is not None:
        restore_training_state(checkpoint, model, optimizer, scheduler, scaler)
        history, seconds_before = checkpoint["history"], checkpoint["seconds"]
        # the run keeps the commit, device, precision and loader it started with; each resume
        # is listed with its own
        kept = ("commit", "device", "precision", "loader")
        resumed = checkpoint.get("resumed", []) + [{"after_epoch": len(history["epochs"]),
                                                    **{k: record[k] for k in kept}}]
        started_with = {k: checkpoint[k] for k in kept if k in checkpoint}
        record = {**record, **started_with, "resumed": resumed}
        finished = len(history["epochs"]) >= cfg.epochs
        log(f"{run_dir} holds a finished run of {cfg.epochs} epochs:" if finished else
            f"resuming {run_dir} after epoch {len(history['epochs'])} of {cfg.epochs}; so far:")
        for epoch in history["epochs"]:
            # runs checkpointed before the counts were recorded show the percentage only
            test = format_test_line(epoch, evaluation_name(cfg)) if "correct" in epoch else \
                f"Test set: Average loss: {epoch['test_loss']:.4f}, Accuracy: {epoch['test_acc']:.2f}%"
            log(f"Epoch {epoch['epoch']}/{cfg.epochs} (from the checkpoint)\n"
                f"Train: Loss={epoch['train_loss']:.4f} Accuracy={epoch['train_acc']:.2f}\n" + test)
        if finished:  # nothing to train: its record stays as the run wrote it
            return finished_run_metrics(run_dir, checkpoint)
    started = time.perf_counter()

    def metrics(history, complete):
        return {"config": cfg.to_dict(), **record, "complete": complete,
                "seconds": seconds_before + time.perf_counter() - started,
                "lrs": history["lrs"], "epochs": history["epochs"]}

    def on_epoch_end(history):
        state = metrics(history, complete=False)
        save_checkpoint(run_dir / CHECKPOINT, model, optimizer, scheduler, {**state, "history": history},
                        scaler)
        write_json(run_dir / "metrics.json", state)

    # the compiled model shares its parameters with `model`, which the checkpoints save
    history = fit(maybe_compile(model, cfg, device, log), train_loader, test_loader, optimizer,
                  scheduler, criterion, device, cfg.epochs, seed=cfg.seed, history=history,
                  on_epoch_end=on_epoch_end, log=log, tta=cfg.tta, amp_dtype=amp_dtype, scaler=scaler,
                  eval_name=evaluation_name(cfg))
    result = metrics(history, complete=True)
    write_json(run_dir / "metrics.json", result)
    return result


def finished_run_metrics(run_dir, checkpoint):
    """A finished run's record: its metrics.json, or, if the run stopped between its last
    checkpoint and its final metrics.json, the record rebuilt from that checkpoint (and saved)."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        if metrics.get("complete") and len(metrics["epochs"]) == len(checkpoint["history"]["epochs"]):
            return metrics
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    training_state = {"model", "optimizer", "scheduler", "rng", "scaler", "history"}
    metrics = {**{k: v for k, v in checkpoint.items() if k not in training_state}, "complete": True}
    write_json(Path(run_dir) / "metrics.json", metrics)  # completes the record the run left
    return metrics


# --------------------------------------------------------------------------- notebook

def notebook_config(smoke=None):
    """The notebook's config: the assignment's run, or with S10_SMOKE=1 a small run that
    exercises every cell in a few minutes on 2 CPU cores."""
    smoke = os.environ.get("S10_SMOKE") == "1" if smoke is None else smoke
    if not smoke:
        return Config()
    return Config(subset=1024, batch_size=128, epochs=2, finder_steps=12)


def notebook_dirs():
    """(run folder, figures folder): $S10_RUN_DIR or runs/notebook, $S10_FIGURES or assets."""
    return (Path(os.environ.get("S10_RUN_DIR") or "runs/notebook"),
            Path(os.environ.get("S10_FIGURES") or "assets"))


def format_config(cfg):
    return "\n".join(f"{name:16} {value!r}" for name, value in cfg.to_dict().items())


def saved(figure, path):
    """Save `figure` to `path` (folders made as needed) and return it, for display."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return figure


def show_lr_finder(finder, lr_max, lr_min, path):
    """The LR sweep's plot, saved to `path`; where no sweep ran (both LRs given), a line saying
    which LRs the run uses instead, and None."""
    if finder is None:
        print(f"no LR sweep: the config gives LR_max = {lr_max:.3e} and LR_min = {lr_min:.3e}")
        return None
    return saved(plot_lr_finder(finder["lrs"], finder["losses"], lr_max, lr_min), path)


def format_per_class(counts, classes=CLASSES):
    accuracy = per_class_accuracy(counts)
    return "\n".join(f"{name:12} {acc:6.2f}%  ({counts[i, i]}/{counts[i].sum()})"
                     for i, (name, acc) in enumerate(zip(classes, accuracy)))


def format_results(metrics):
    """The run's results as a small markdown-style table."""
    epochs = metrics["epochs"]
    last, best = epochs[-1], max(epochs, key=lambda e: e["test_acc"])
    on = "validation" if metrics.get("evaluated_on", "test set").startswith("validation") else "test"
    rows = [("epochs", f"{last['epoch']} of {metrics['config']['epochs']}"),
            (f"{on} accuracy, last epoch", f"{last['test_acc']:.2f}%"),
            (f"best {on} accuracy", f"{best['test_acc']:.2f}% (epoch {best['epoch']})"),
            *([("with flip TTA, last epoch", f"{last['test_acc_tta']:.2f}%")] if "test_acc_tta" in last else []),
            ("train accuracy, last epoch", f"{last['train_acc']:.2f}%"),
            ("seconds per epoch (mean)", f"{sum(e['seconds'] for e in epochs) / len(epochs):.1f}"),
            ("LR_max / LR_min", f"{metrics['lr_max']:.3e} / {metrics['lr_min']:.3e}"),
            ("device, precision", f"{metrics['device']}, {metrics.get('precision', 'float32')}"),
            ("data", metrics["data"])]
    return "\n".join(["| result | value |", "|---|---|"] + [f"| {n} | {v} |" for n, v in rows])
